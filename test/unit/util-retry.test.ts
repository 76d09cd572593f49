// The one retry loop (util/retry.ts): which errors it retries, its jittered back-off, a stop in the middle of a
// sleep, and how often a long outage is logged. Time is a fake clock: nothing here waits for real.
import { jest } from '@jest/globals';
import { pino } from 'pino';
import { HttpError, isPeerAway } from '../../agent/http.js';
import { realClock, sleep } from '../../util/clock.js';
import { backoffDelay, retry, type RetryOptions } from '../../util/retry.js';
import { FakeClock } from '../harness/clock.js';

class Flaky extends Error {
  readonly reason = 'Flaky';
}
class Fatal extends Error {}

/** An operation that fails `failures` times with Flaky, then returns 'ok'; `calls` counts its attempts. */
function flaky(failures: number) {
  const op = { calls: 0, run: async () => (++op.calls <= failures ? Promise.reject(new Flaky(`failure ${op.calls}`)) : 'ok') };
  return op;
}

/** A pino logger whose lines the test reads. */
function capturedLog() {
  const lines: Array<{ level: number; msg: string; failures?: number; what?: string; reason?: string }> = [];
  return { lines, log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) }) };
}

/** Runs retry on a fake clock, moving time until it settles; returns its outcome and the sleeps it asked for. */
async function settleRetry<T>(operation: () => Promise<T>, options: Partial<RetryOptions> = {}, clock = new FakeClock()) {
  const startedAt = clock.now();
  let outcome: { value: T } | { error: unknown } | undefined;
  retry('op', operation, { classify: (err) => err instanceof Flaky, backoff: { initialMs: 100, maxMs: 800 }, clock, ...options }).then(
    (value) => { outcome = { value }; },
    (error: unknown) => { outcome = { error }; },
  );
  await clock.until('retry to settle', () => outcome !== undefined, 10, 10_000_000);
  return { outcome: outcome!, elapsedMs: clock.now() - startedAt };
}

describe('retry', () => {
  it('retries what classify calls curable until the operation succeeds', async () => {
    const op = flaky(4);
    const { outcome } = await settleRetry(op.run);
    expect(outcome).toEqual({ value: 'ok' });
    expect(op.calls).toBe(5);
  });

  it('throws any other error at once, without sleeping', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const { outcome, elapsedMs } = await settleRetry(async () => { calls++; throw new Fatal('no'); }, {}, clock);
    expect((outcome as { error: unknown }).error).toBeInstanceOf(Fatal);
    expect(calls).toBe(1);
    expect(elapsedMs).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('stops in the middle of a sleep when its signal aborts, throwing the last error', async () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const op = flaky(Infinity);
    let outcome: unknown;
    retry('op', op.run, { classify: () => true, backoff: { initialMs: 3_600_000, maxMs: 3_600_000 }, signal: controller.signal, clock }).catch((err: unknown) => {
      outcome = err;
    });
    await clock.until('the first sleep', () => clock.pending === 1);
    controller.abort();
    await clock.until('retry to give up', () => outcome !== undefined, 100, 10_000);
    expect(outcome).toBeInstanceOf(Flaky);
    expect((outcome as Error).message).toBe('failure 1');
    expect(op.calls).toBe(1);
    expect(clock.now()).toBeLessThan(3_600_000); // the hour-long sleep was cut short, and its timer cancelled
    expect(clock.pending).toBe(0);
  });

  it('gives up past its deadline with the error the caller makes of the last failure', async () => {
    const op = flaky(Infinity);
    const deadline = { ms: 1000, error: (last: unknown) => new Error(`gave up after ${String(last)}`) };
    const { outcome, elapsedMs } = await settleRetry(op.run, { deadline, backoff: { initialMs: 100, maxMs: 100, jitter: 0 } });
    expect(((outcome as { error: Error }).error).message).toBe('gave up after Error: failure 11');
    expect(elapsedMs).toBe(1000);
  });

  it('sleeps the back-off it draws: doubling from initialMs to maxMs, each delay within its jitter band', async () => {
    const clock = new FakeClock();
    const sleeps: number[] = [];
    let previous = clock.now();
    const op = { calls: 0, run: async () => {
      if (op.calls++ > 0) sleeps.push(clock.now() - previous);
      previous = clock.now();
      if (op.calls <= 7) throw new Flaky('x');
      return 'ok';
    } };
    await settleRetry(op.run, { backoff: { initialMs: 100, maxMs: 1000, jitter: 0.5 }, random: () => 0 }, clock);
    // random 0 draws the bottom of each band: half the base (100, 200, 400, 800, then 1000 capped).
    expect(sleeps).toEqual([50, 100, 200, 400, 500, 500, 500]);
  });
});

describe('backoffDelay', () => {
  const backoff = { initialMs: 250, maxMs: 2000, jitter: 0.4 };
  it.each([1, 2, 3, 4, 5, 10, 100])('after %i failures lies in [base × (1 − jitter), base)', (failures) => {
    const base = Math.min(2000, 250 * 2 ** (failures - 1));
    expect(backoffDelay(backoff, failures, () => 0)).toBeCloseTo(base * 0.6);
    const top = backoffDelay(backoff, failures, () => 1 - Number.EPSILON);
    expect(top).toBeLessThan(base);
    expect(top).toBeGreaterThan(base * 0.99);
    for (let i = 0; i < 50; i++) {
      const drawn = backoffDelay(backoff, failures);
      expect(drawn).toBeGreaterThanOrEqual(base * 0.6);
      expect(drawn).toBeLessThan(base);
    }
  });

  it('has no jitter when asked for none', () => {
    expect(backoffDelay({ initialMs: 100, maxMs: 1000, jitter: 0 }, 3, () => 0.9)).toBe(400);
  });
});

describe('retry log cadence', () => {
  const fixed = { initialMs: 100, maxMs: 100, jitter: 0 };

  it('logs the first failure, then every Nth', async () => {
    const { lines, log } = capturedLog();
    await settleRetry(flaky(50).run, { backoff: fixed, log, logCadence: { failures: 20, ms: 1e9 } });
    expect(lines.filter((l) => l.msg === 'failed; retrying').map((l) => l.failures)).toEqual([1, 21, 41]);
    expect(lines.filter((l) => l.msg === 'failed; retrying').every((l) => l.what === 'op' && l.reason === 'Flaky')).toBe(true);
    // And, once back, one line saying so.
    expect(lines.filter((l) => l.msg === 'recovered').map((l) => l.failures)).toEqual([50]);
  });

  it('logs again after T has passed when that comes before the Nth failure', async () => {
    const { lines, log } = capturedLog();
    await settleRetry(flaky(35).run, { backoff: fixed, log, logCadence: { failures: 1000, ms: 1000 } });
    // One attempt per 100 ms: a line each 1000 ms, i.e. every 10th failure.
    expect(lines.filter((l) => l.msg === 'failed; retrying').map((l) => l.failures)).toEqual([1, 11, 21, 31]);
  });

  it('says nothing when the first attempt succeeds', async () => {
    const { lines, log } = capturedLog();
    await settleRetry(flaky(0).run, { log });
    expect(lines).toEqual([]);
  });
});

describe('isPeerAway', () => {
  it.each([
    ['an unreachable peer', new HttpError('Unreachable', 'refused'), true],
    ['a peer that did not answer in time', new HttpError('Timeout', 'slow'), true],
    ['a peer that refused the request', new HttpError('DigestMismatch', 'no', 409), false],
    ['an error status without a reason', new HttpError('HttpStatus', '500', 500), false],
    ['another error that says Unreachable', Object.assign(new Error('x'), { reason: 'Unreachable' }), false],
  ])('%s: %s', (_what, err, away) => {
    expect(isPeerAway(err)).toBe(away);
  });
});

describe('sleep on the real clock', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('ends when its signal aborts and leaves no timer behind', async () => {
    jest.useFakeTimers();
    const controller = new AbortController();
    let woke = false;
    void sleep(realClock, 3_600_000, controller.signal).then(() => { woke = true; });
    expect(jest.getTimerCount()).toBe(1);
    controller.abort();
    await Promise.resolve(); // the promise jobs of an abort, not the hour
    expect(woke).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
  });
});
