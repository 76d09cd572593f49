// Time as a dependency: what the agents and the retry loop read and wait on, injected so that unit tests move a
// fake clock (test/harness/clock.ts) instead of sleeping. The operator's timing code (queue, leader, burst gate) reads it too.

export interface Clock {
  /** Monotonic milliseconds: only differences mean anything. */
  now(): number;
  /** Runs fn once, ms from now; the returned function cancels it. unref: the timer alone keeps no process alive. */
  after(ms: number, fn: () => void, options?: { unref?: boolean }): () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn, options) => {
    const timer = setTimeout(fn, Math.max(0, ms));
    if (options?.unref) timer.unref();
    return () => clearTimeout(timer);
  },
};

/** Resolves after ms, or early (never rejecting) once `signal` aborts: a stop never waits out a back-off. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const wake = () => {
      cancel();
      signal?.removeEventListener('abort', wake);
      resolve();
    };
    const cancel = clock.after(ms, wake);
    signal?.addEventListener('abort', wake, { once: true });
  });
}

/** Calls tick every ms until the returned function is called; the timer alone keeps no process alive. */
export function every(clock: Clock, ms: number, tick: () => void): () => void {
  let cancel = () => {};
  const schedule = () => {
    cancel = clock.after(ms, () => {
      schedule();
      tick();
    }, { unref: true });
  };
  schedule();
  return () => cancel();
}

/** Resolves once `signal` aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
