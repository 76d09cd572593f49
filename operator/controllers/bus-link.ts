// Each job's link to the bus, kept off the reconcile path: provisioning its NATS resources and watching its
// learner-progress record run in the background, a few jobs at a time, and report back by enqueueing the
// job. A slow or absent NATS then delays the job's status, never the Kubernetes work of other jobs.
import type { Logger } from 'pino';
import type { RLJob } from '../../api/index.js';
import type { LearnerProgress } from '../../bus/index.js';
import type { JobBus } from './context.js';

export type BusState = { phase: 'Ready' } | { phase: 'Pending' } | { phase: 'Failed'; message: string; retryInMs: number };

interface Link {
  uid: string;
  state: BusState;
  failures: number;
  retryAt: number;
  progress?: LearnerProgress;
  stopWatch?: () => Promise<void>;
  /** The provisioning in flight: a teardown waits for it, or it could re-create what was just removed. */
  task?: Promise<void>;
}

export class JobBusLink {
  private readonly links = new Map<string, Link>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly bus: JobBus,
    /** Jobs provisioned at once (NATS creates streams one at a time anyway). */
    private readonly concurrency: number,
    private readonly changed: (key: string) => void,
    private readonly log: Logger,
    /** True while Kubernetes work is queued: bus work waits for a lull (at most MAX_DEFER_MS). */
    private readonly busy: () => boolean = () => false,
  ) {}

  /** Bus work yields to queued Kubernetes work for at most this long (agents start slower than that anyway). */
  static readonly MAX_DEFER_MS = 5_000;

  /** Where the job's bus resources stand; starts provisioning them when needed, never waits for it. */
  ensure(key: string, job: RLJob): BusState {
    const uid = job.metadata.uid!;
    let link = this.links.get(key);
    if (link && link.uid !== uid) { void this.forget(key); link = undefined; } // a new job of the same name
    if (!link) {
      link = { uid, state: { phase: 'Pending' }, failures: 0, retryAt: 0 };
      this.links.set(key, link);
      link.task = this.provision(key, job, link);
    } else if (link.state.phase === 'Failed' && Date.now() >= link.retryAt) {
      link.state = { phase: 'Pending' };
      link.task = this.provision(key, job, link);
    }
    return link.state.phase === 'Failed' ? { ...link.state, retryInMs: Math.max(0, link.retryAt - Date.now()) } : link.state;
  }

  progress(key: string): LearnerProgress | undefined {
    return this.links.get(key)?.progress;
  }

  private async provision(key: string, job: RLJob, link: Link): Promise<void> {
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name };
    await this.slot();
    try {
      if (this.links.get(key) !== link) return; // forgotten meanwhile
      await this.bus.provision(ref, job.spec.nats?.url);
      if (!link.stopWatch) {
        const watch = await this.bus.watchProgress(ref, (p) => { link.progress = p; this.changed(key); }, job.spec.nats?.url);
        link.stopWatch = () => watch.stop();
        if (this.links.get(key) !== link) await link.stopWatch(); // forgotten while we connected
      }
      link.state = { phase: 'Ready' };
      link.failures = 0;
      this.log.info({ job: ref.name, namespace: ref.namespace }, 'NATS resources provisioned');
    } catch (err) {
      link.failures++;
      const backoff = Math.min(1000 * 2 ** (link.failures - 1), 60_000);
      link.retryAt = Date.now() + backoff;
      const message = String((err as Error).message ?? err);
      link.state = { phase: 'Failed', message, retryInMs: backoff };
      this.log.warn({ job: ref.name, namespace: ref.namespace, err: message, retryInMs: backoff }, 'bus provisioning failed');
    } finally {
      this.release();
    }
    this.changed(key);
  }

  /** Removes the job's NATS resources (idempotent). */
  async teardown(key: string, job: RLJob): Promise<void> {
    await this.forget(key);
    await this.bus.teardown({ namespace: job.metadata.namespace!, name: job.metadata.name }, job.spec.nats?.url);
  }

  /** Stops watching the job (it is gone, or is being torn down). */
  async forget(key: string): Promise<void> {
    const link = this.links.get(key);
    this.links.delete(key);
    await link?.task;
    await link?.stopWatch?.().catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.links.keys()].map((k) => this.forget(k)));
  }

  private async slot(): Promise<void> {
    // Creating children is what unblocks everything else in a burst of new jobs; provisioning (CPU-heavy
    // for nats-server: streams on disk) waits until the queues are drained, or MAX_DEFER_MS at most.
    const deadline = Date.now() + JobBusLink.MAX_DEFER_MS;
    while (this.busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.running < this.concurrency) { this.running++; return; }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); else this.running--;
  }
}
