// JSON over HTTP to a local engine, trainer or environment, with a deadline per request and errors that carry a reason.
import type { Backoff } from '../util/retry.js';

export class HttpError extends Error {
  constructor(
    /** The server's reason when it gave one (e.g. DigestMismatch), else Unreachable, Timeout, NotJson or HttpStatus (an error status without one). */
    readonly reason: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The peer did not answer (not up yet, restarting, stalled): a later attempt may find it back. Its refusals are final. */
export function isPeerAway(err: unknown): boolean {
  return err instanceof HttpError && (err.reason === 'Unreachable' || err.reason === 'Timeout');
}

/** How often a local peer (engine, trainer, environment server) that is away is asked again: 250 ms doubling to 2 s. */
export const PEER_BACKOFF: Backoff = { initialMs: 250, maxMs: 2000 };

export async function postJson<T>(url: string, body: unknown, timeoutMs: number): Promise<T> {
  return requestJson<T>(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }, timeoutMs);
}

export async function getJson<T>(url: string, timeoutMs: number): Promise<T> {
  return requestJson<T>(url, { method: 'GET' }, timeoutMs);
}

async function requestJson<T>(url: string, init: RequestInit, timeoutMs: number): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
    throw new HttpError(timedOut ? 'Timeout' : 'Unreachable', `${init.method} ${url}: ${timedOut ? `no answer in ${timeoutMs} ms` : String(err)}`);
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new HttpError('NotJson', `${init.method} ${url}: ${response.status}, not JSON`, response.status);
  }
  if (!response.ok) {
    const { reason, message } = (json ?? {}) as { reason?: string; message?: string };
    throw new HttpError(reason ?? 'HttpStatus', `${init.method} ${url}: ${response.status} ${message ?? text.slice(0, 200)}`, response.status);
  }
  return json as T;
}
