// Each job's link to the bus, kept off the reconcile path: provisioning its NATS resources and watching its
// learner-progress record run in the background, a few jobs at a time, and report back by enqueueing the
// job. A slow or absent NATS then delays the job's status, never the Kubernetes work of other jobs; and a job
// whose own NATS never answers costs only itself (its connect has a deadline and holds no provisioning slot).
// A progress record that does not decode is said on the job (a Warning Event), or its status would just freeze.
import type { Logger } from 'pino';
import type { RLJob } from '../../api/index.js';
import type { BusError, LearnerProgress } from '../../bus/index.js';
import type { KubeObject } from '../kube/client.js';
import type { EventSink } from '../kube/events.js';
import { BurstGate } from './burst-gate.js';
import type { JobBus } from './context.js';

export type BusState = { phase: 'Ready' } | { phase: 'Pending' } | { phase: 'Failed'; message: string; retryInMs: number };

interface Link {
  uid: string;
  state: BusState;
  failures: number;
  retryAt: number;
  progress?: LearnerProgress;
  stopWatch?: () => Promise<void>;
  /**
   * Creating the job's resources (in a slot, after the connect): a teardown waits for it, or it could re-create
   * what was just removed. A connect still pending need not be waited for: it finds the link gone and stops.
   */
  creating?: Promise<void>;
}

/** A failed provisioning is retried after 1 s, doubling to 60 s. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;

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
    /** Where an undecodable progress record is said (rate-limited there: the same one again is not repeated). */
    private readonly events: EventSink,
    /** Bus work yields to a burst of Kubernetes work; its clock is this link's. */
    private readonly gate: BurstGate = new BurstGate(),
  ) {}

  /** Where the job's bus resources stand; starts provisioning them when needed, never waits for it. */
  ensure(key: string, job: RLJob): BusState {
    const uid = job.metadata.uid!;
    const now = this.gate.clock.now();
    let link = this.links.get(key);
    if (link && link.uid !== uid) { void this.forget(key); link = undefined; } // a new job of the same name
    if (!link) {
      link = { uid, state: { phase: 'Pending' }, failures: 0, retryAt: 0 };
      this.links.set(key, link);
      void this.provision(key, job, link);
    } else if (link.state.phase === 'Failed' && now >= link.retryAt) {
      link.state = { phase: 'Pending' };
      void this.provision(key, job, link);
    }
    return link.state.phase === 'Failed' ? { ...link.state, retryInMs: Math.max(0, link.retryAt - now) } : link.state;
  }

  progress(key: string): LearnerProgress | undefined {
    return this.links.get(key)?.progress;
  }

  private async provision(key: string, job: RLJob, link: Link): Promise<void> {
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name };
    const url = job.spec.nats?.url;
    try {
      // Creating streams is CPU-heavy for nats-server: it waits until the burst is over.
      await this.gate.pass();
      // No slot is held while connecting: an address that never answers fails this job at its deadline alone.
      await this.bus.connect(url);
      if (this.links.get(key) !== link) return; // forgotten meanwhile: nothing was created
      link.creating = this.inSlot(() => this.create(key, job, link));
      await link.creating;
      link.state = { phase: 'Ready' };
      link.failures = 0;
      this.log.info({ job: ref.name, namespace: ref.namespace }, 'NATS resources provisioned');
    } catch (err) {
      link.failures++;
      const backoff = Math.min(RETRY_BASE_MS * 2 ** (link.failures - 1), RETRY_MAX_MS);
      link.retryAt = this.gate.clock.now() + backoff;
      const message = String((err as Error).message ?? err);
      link.state = { phase: 'Failed', message, retryInMs: backoff };
      this.log.warn({ job: ref.name, namespace: ref.namespace, err: message, reason: (err as { reason?: string }).reason, retryInMs: backoff }, 'bus provisioning failed');
    }
    this.changed(key);
  }

  private async create(key: string, job: RLJob, link: Link): Promise<void> {
    if (this.links.get(key) !== link) return; // forgotten while waiting for a slot
    const ref = { namespace: job.metadata.namespace!, name: job.metadata.name };
    const url = job.spec.nats?.url;
    await this.bus.provision(ref, url);
    if (!link.stopWatch) {
      const watch = await this.bus.watchProgress(ref, {
        onChange: (p) => { link.progress = p; this.changed(key); },
        onUndecodable: (recordKey, err) => this.undecodable(job, recordKey, err),
      }, url);
      link.stopWatch = () => watch.stop();
      if (this.links.get(key) !== link) await link.stopWatch(); // forgotten while we started watching
    }
  }

  private undecodable(job: RLJob, recordKey: string, err: BusError): void {
    const message = `learner progress record "${recordKey}" skipped, it does not decode (${err.reason}): ${err.message}; status shows the last one that did`;
    this.events.record(job as unknown as KubeObject, 'Warning', 'UndecodableProgress', message);
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
    await link?.creating?.catch(() => undefined);
    await link?.stopWatch?.().catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.links.keys()].map((k) => this.forget(k)));
  }

  /** Runs work in one of `concurrency` slots, waiting for one first. */
  private async inSlot(work: () => Promise<void>): Promise<void> {
    if (this.running < this.concurrency) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); else this.running--;
    }
  }
}
