// Time as the operator's timing code reads it (the work queue, the leader elector, the burst gate and the bus
// link): injected, so their tests move a fake clock instead of sleeping through real delays.

export interface Clock {
  /** Monotonic milliseconds: only differences mean anything (never compared with another machine's clock). */
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

/** Resolves after ms on this clock. */
export const sleep = (clock: Clock, ms: number) => new Promise<void>((resolve) => { clock.after(ms, resolve); });
