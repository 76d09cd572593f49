// Work that can wait (status writes, the finalizer, NATS provisioning) yields to a burst of reconciles: children
// are what unblocks everything else. One gate, one bound, one clock: such work goes at the next lull (the
// Manager reports the queues drained) or MAX_DEFER_MS after it fell due, whichever comes first.
import { realClock, type Clock } from '../../util/clock.js';

export class BurstGate {
  /** The longest anything yields to a burst (agents start slower than that anyway). */
  static readonly MAX_DEFER_MS = 5_000;
  private lastLull = Number.NEGATIVE_INFINITY;
  private readonly waiting = new Set<() => void>();

  constructor(
    /** True while a burst is on (the Manager: reconciles queued besides the caller's, or children not yet seen). */
    readonly busy: () => boolean = () => false,
    readonly clock: Clock = realClock,
  ) {}

  /** The queues drained: whatever waited for the burst to end may go now. */
  lull(): void {
    this.lastLull = this.clock.now();
    for (const go of [...this.waiting]) go();
  }

  /**
   * How much longer work due since `since` yields: 0 (go ahead: no burst, a lull came since, or it waited
   * long enough), else until the next lull, this long at most.
   */
  yieldMs(since: number): number {
    const left = since + BurstGate.MAX_DEFER_MS - this.clock.now();
    return left > 0 && this.lastLull < since && this.busy() ? left : 0;
  }

  /** Resolves when work due now may go: at once outside a burst, else at the next lull or MAX_DEFER_MS later. */
  pass(): Promise<void> {
    const ms = this.yieldMs(this.clock.now());
    if (ms === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const go = () => { cancel(); this.waiting.delete(go); resolve(); };
      const cancel = this.clock.after(ms, go, { unref: true });
      this.waiting.add(go);
    });
  }
}
