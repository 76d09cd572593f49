// A work queue keyed by namespace/name, as client-go's: queued keys are deduplicated, one reconcile per key
// runs at a time (a key added meanwhile runs once more afterwards), failures come back with per-key
// exponential back-off, and a reconcile may ask to run again after a delay (deadlines, TTLs) or once the
// queues have drained (work that yields to a burst: see Manager). Delays run on an injected clock.
import { realClock, type Clock } from '../../util/clock.js';

export interface ReconcileResult {
  /** Run this key again after this many milliseconds (a deadline or TTL falls due), even if nothing changes. */
  requeueAfterMs?: number;
  /** Also run this key again when the queues next drain (`wakeParked`), if that comes before requeueAfterMs. */
  requeueOnLull?: boolean;
}

export interface QueueOptions {
  /** Keys reconciled concurrently (different keys only). */
  workers: number;
  /** First retry delay after an error; doubles per consecutive failure of the same key. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface QueueObserver {
  reconciled(key: string, seconds: number, error?: unknown): void;
  depth(depth: number): void;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | void>;

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active_ = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; cancel: () => void }>();
  private readonly parked = new Set<string>();
  private readonly idleWorkers: Array<() => void> = [];
  private readonly idleHandlers: Array<() => void> = [];
  private readonly loops: Promise<void>[] = [];
  private stopping = false;

  constructor(
    private readonly options: QueueOptions,
    private readonly reconcile: Reconciler,
    private readonly observer?: QueueObserver,
    private readonly clock: Clock = realClock,
  ) {}

  get depth(): number { return this.ready.length; }
  /** Keys being reconciled right now. */
  get active(): number { return this.active_.size; }
  /** Nothing waiting and nothing running (delayed and parked keys aside). */
  get idle(): boolean { return this.ready.length === 0 && this.active_.size === 0; }
  /** Keys waiting for a delay (for tests and memory accounting: one per key at most). */
  get delayedCount(): number { return this.delayed.size; }
  /** Called whenever the queue becomes idle after a reconcile. */
  onIdle(handler: () => void): void { this.idleHandlers.push(handler); }
  /** Runs the keys parked by `requeueOnLull` now. */
  wakeParked(): void {
    const keys = [...this.parked];
    this.parked.clear();
    for (const key of keys) this.add(key);
  }
  /** Consecutive failures of a key (0 after a success). */
  failuresOf(key: string): number { return this.failures.get(key) ?? 0; }

  add(key: string): void {
    if (this.stopping || this.queued.has(key)) return;
    if (this.active_.has(key)) { this.dirty.add(key); return; }
    this.queued.add(key);
    this.ready.push(key);
    this.observer?.depth(this.ready.length);
    this.idleWorkers.shift()?.();
  }

  /** Adds the key after delayMs; an earlier pending delay for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopping) return;
    if (delayMs <= 0) { this.add(key); return; }
    const at = this.clock.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    pending?.cancel();
    const cancel = this.clock.after(delayMs, () => { this.delayed.delete(key); this.add(key); }, { unref: true });
    this.delayed.set(key, { at, cancel });
  }

  /** Back-off delay for the next retry of key: base · 2^(failures−1), capped. */
  backoffMs(failures: number): number {
    return Math.min(this.options.baseDelayMs * 2 ** Math.max(0, failures - 1), this.options.maxDelayMs);
  }

  start(): void {
    for (let i = 0; i < this.options.workers; i++) this.loops.push(this.work());
  }

  /** Stops taking keys and waits for the reconciles in flight. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    for (const { cancel } of this.delayed.values()) cancel();
    this.delayed.clear();
    for (const wake of this.idleWorkers.splice(0)) wake();
    await Promise.all(this.loops);
  }

  private async next(): Promise<string | undefined> {
    while (!this.stopping) {
      const key = this.ready.shift();
      if (key !== undefined) {
        this.queued.delete(key);
        this.observer?.depth(this.ready.length);
        return key;
      }
      await new Promise<void>((resolve) => this.idleWorkers.push(resolve));
    }
    return undefined;
  }

  private async work(): Promise<void> {
    for (let key = await this.next(); key !== undefined; key = await this.next()) {
      this.active_.add(key);
      const started = process.hrtime.bigint();
      try {
        const result = await this.reconcile(key);
        this.failures.delete(key);
        this.observer?.reconciled(key, Number(process.hrtime.bigint() - started) / 1e9);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
        if (result?.requeueOnLull) this.parked.add(key);
      } catch (err) {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        this.observer?.reconciled(key, Number(process.hrtime.bigint() - started) / 1e9, err);
        this.addAfter(key, this.backoffMs(failures));
      } finally {
        this.active_.delete(key);
        if (this.dirty.delete(key)) this.add(key);
        if (this.idle && !this.stopping) for (const h of this.idleHandlers) h();
      }
    }
  }
}

export const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;
export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
