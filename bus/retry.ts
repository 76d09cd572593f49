// Retries an idempotent bus operation while the server is away (restart, reconnect), with back-off.
import { JetStreamApiError } from '@nats-io/jetstream';
import { BusError } from './errors.js';

const transientNames = new Set(['TimeoutError', 'NoRespondersError', 'ConnectionError', 'RequestError', 'DrainingConnectionError']);

/** True for errors that a later attempt can cure: time-outs, no JetStream responders, a 503 while it recovers. */
export function isTransient(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.status === 503 || err.status === 408;
  if (!(err instanceof Error)) return false;
  return transientNames.has(err.name) || /timeout|no responders|disconnect|reconnect/i.test(err.message);
}

export async function withRetry<T>(what: string, operation: () => Promise<T>, deadlineMs = 120_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let wait = 100;
  for (;;) {
    try {
      return await operation();
    } catch (err) {
      if (!isTransient(err)) throw err;
      if (Date.now() + wait > deadline) throw new BusError('Timeout', `${what}: server unavailable for ${deadlineMs} ms (${String(err)})`);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 2000);
    }
  }
}
