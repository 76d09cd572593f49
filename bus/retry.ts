// Which bus errors a later attempt can cure (by the client's error classes and the server's codes), and the
// bus's use of util/retry for idempotent operations while the server is away, stalled or electing a leader.
import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
// The status error of a pull is exported only from the package's internal entry (the same class).
import { JetStreamStatusError } from '@nats-io/jetstream/internal';
import { ConnectionError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { backoffDelay, retry, type Backoff } from '../util/retry.js';
import { BusError } from './errors.js';

/**
 * JetStream API errors that a server returns while it recovers: 408 (request timeout), 503 (JetStream or a
 * stream's quorum temporarily unavailable, or a full stream pushing back), 504, and the 500s of a cluster
 * changing leaders — 10007 not assigned yet, 10009 cannot handle (no leader), 10118/10119 stream/consumer
 * offline while its peers catch up.
 */
const transientStatuses = new Set([408, 503, 504]);
const transientApiCodes = new Set([10007, 10009, 10118, 10119]);
/** Also a 503, but a configuration (the account has no JetStream): no wait cures it. */
const JETSTREAM_NOT_ENABLED = 10039;
/**
 * Status errors of a pull: 408 the pull timed out, 409 the server cut it (leader change, limits), 503 no
 * responders. A deleted consumer also answers 409, but the next pull then gets a 404, which is final.
 */
const transientPullCodes = new Set([408, 409, 503]);

/** True for errors that a later attempt can cure; false for a bad request, a missing resource, a closed connection. */
export function isTransient(err: unknown): boolean {
  // The client wraps its causes (a publish with no responders is a JetStreamNotEnabled caused by a
  // RequestError caused by NoRespondersError): the innermost known error decides.
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof JetStreamApiError) {
      return e.code !== JETSTREAM_NOT_ENABLED && (transientStatuses.has(e.status) || transientApiCodes.has(e.code));
    }
    if (e instanceof JetStreamStatusError) return transientPullCodes.has(e.code);
    if (e instanceof TimeoutError || e instanceof NoRespondersError || e instanceof ConnectionError) return true;
    // A pull that saw two idle heartbeats go missing (a stalled server or a dropped route) ends with the base
    // class and nothing else; so does an empty publish ack. Both are the server's state, not our request's.
    if (e.constructor === JetStreamError) return true;
    if (e instanceof RequestError && e.cause === undefined) return true;
  }
  return false;
}

export interface RetryOptions {
  /** Give up (BusError 'Timeout') after this long; by default never: a stalled bus costs time, not the job. */
  deadlineMs?: number;
  /** Stops retrying, also mid-sleep: the last error is thrown. */
  signal?: AbortSignal;
  log?: Logger;
}

/** Back-off between attempts: 100 ms doubling to 2 s, with jitter so many clients do not return in step. */
export const BUS_BACKOFF: Backoff = { initialMs: 100, maxMs: 2000 };

/** The delay after the (0-based) `attempt`-th failure in a row, for the loops that cannot use withRetry. */
export function backoffMs(attempt: number): number {
  return backoffDelay(BUS_BACKOFF, attempt + 1);
}

/** `operation` (idempotent) retried while the bus is away, stalled or electing a leader. */
export function withRetry<T>(what: string, operation: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { deadlineMs, signal, log } = options;
  return retry(what, operation, {
    classify: isTransient,
    backoff: BUS_BACKOFF,
    ...(signal ? { signal } : {}),
    ...(log ? { log } : {}),
    ...(deadlineMs !== undefined
      ? { deadline: { ms: deadlineMs, error: (last: unknown) => new BusError('Timeout', `${what}: server unavailable for ${deadlineMs} ms (${String(last)})`) } }
      : {}),
  });
}
