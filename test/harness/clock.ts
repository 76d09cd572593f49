// A clock for unit tests (util/clock.ts): time moves only when the test moves it, and timers that
// fall due on the way run in order, with the promise jobs each one starts settled before the next.
import type { Clock } from '../../util/clock.js';

interface Timer { at: number; seq: number; fn: () => void }

/** Lets every promise job and I/O callback that is ready run (what a real timer's turn would allow). */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: Timer[] = [];

  now(): number { return this.t; }

  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => { this.timers = this.timers.filter((x) => x !== timer); };
  }

  /** Timers not yet run (a test's "nothing else is scheduled"). */
  get pending(): number { return this.timers.length; }

  /** Moves time on by ms, running each timer that falls due on the way at its own time. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (let next = this.due(end); next; next = this.due(end)) {
      this.timers = this.timers.filter((x) => x !== next);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await settle();
    }
    this.t = end;
  }

  /** Moves time on by ms without running anything, as a frozen process sees it on waking: every timer overdue. */
  freeze(ms: number): void { this.t += ms; }

  /** Steps time on (stepMs at a time; 0: only what is due now runs) until `ok()` holds, or fails after `limit` steps. */
  async until(what: string, ok: () => boolean, stepMs = 1, limit = 100_000): Promise<void> {
    await settle();
    for (let steps = 0; !ok(); steps++) {
      if (steps >= limit) throw new Error(`fake clock: still waiting for ${what} after ${steps} steps (${this.t} ms)`);
      await this.advance(stepMs);
    }
  }

  private due(end: number): Timer | undefined {
    let first: Timer | undefined;
    for (const x of this.timers) if (x.at <= end && (!first || x.at < first.at || (x.at === first.at && x.seq < first.seq))) first = x;
    return first;
  }
}
