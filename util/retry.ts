// One retry loop for operations that a later attempt can cure (a stalled bus, an HTTP peer restarting): the caller
// says which errors those are, the back-off spreads clients apart with jitter, a stop is honoured while sleeping,
// and a long outage logs at a bounded cadence instead of once per attempt.
import type { Logger } from 'pino';
import { realClock, sleep, type Clock } from './clock.js';

export interface Backoff {
  /** The delay after the first failure; it doubles with each further one. */
  initialMs: number;
  /** The most a delay grows to. */
  maxMs: number;
  /** The share of each delay drawn at random (0..1, default 0.5: a delay lies in [base/2, base]), so many clients do not return in step. */
  jitter?: number;
}

/** The delay before attempt `failures + 1`, after `failures` (≥ 1) failures in a row. */
export function backoffDelay(backoff: Backoff, failures: number, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  const jitter = backoff.jitter ?? 0.5;
  return base * (1 - jitter + jitter * random());
}

export interface LogCadence {
  /** After the first failure (always logged), log again once this many more have failed … */
  failures: number;
  /** … or this long has passed since the last line, whichever comes first. */
  ms: number;
}
const DEFAULT_LOG_CADENCE: LogCadence = { failures: 20, ms: 30_000 };

export interface RetryOptions {
  /** True for an error a later attempt can cure; any other is thrown at once. */
  classify: (err: unknown) => boolean;
  backoff: Backoff;
  /** Stops retrying, also in the middle of a sleep: the last error is thrown. */
  signal?: AbortSignal;
  log?: Logger;
  logCadence?: LogCadence;
  /** Give up once the next attempt would start later than `ms` after the first, throwing `error(last failure)`. */
  deadline?: { ms: number; error: (last: unknown) => Error };
  clock?: Clock;
  /** How a back-off is waited out (default: on `clock`, cut short by `signal`); for callers whose clock sleeps. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

/** Runs `operation` until it succeeds, an error is not retryable, the deadline passes or `signal` aborts. */
export async function retry<T>(what: string, operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  const clock = options.clock ?? realClock;
  const cadence = options.logCadence ?? DEFAULT_LOG_CADENCE;
  const started = clock.now();
  let lastLine: { failures: number; at: number } | undefined;
  for (let failures = 1; ; failures++) {
    try {
      const result = await operation();
      if (lastLine) options.log?.info({ what, failures: failures - 1, downMs: Math.round(clock.now() - started) }, 'recovered');
      return result;
    } catch (err) {
      if (!options.classify(err) || options.signal?.aborted) throw err;
      const delayMs = Math.round(backoffDelay(options.backoff, failures, options.random));
      const now = clock.now();
      if (options.deadline && now + delayMs - started > options.deadline.ms) throw options.deadline.error(err);
      if (!lastLine || failures - lastLine.failures >= cadence.failures || now - lastLine.at >= cadence.ms) {
        lastLine = { failures, at: now };
        options.log?.warn({ what, failures, reason: reasonOf(err), err: String(err), delayMs }, 'failed; retrying');
      }
      await (options.sleep ? options.sleep(delayMs, options.signal) : sleep(clock, delayMs, options.signal));
      if (options.signal?.aborted) throw err;
    }
  }
}

function reasonOf(err: unknown): string | undefined {
  const reason = (err as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' ? reason : undefined;
}
