// Wires the operator together: informers → event handlers → one work queue per kind → controllers.
// Events only say which key to look at; every reconcile reads the caches and does the whole job.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { RESOURCES, type KubeClient, type KubeObject } from './kube/client.js';
import type { Clock } from '../util/clock.js';
import type { EventSink } from './kube/events.js';
import { Informer } from './kube/informer.js';
import type { OperatorMetrics } from './kube/metrics.js';
import { WorkQueue, keyOf, type QueueOptions } from './kube/queue.js';
import type { BuildConfig } from './controllers/builders.js';
import { BurstGate } from './controllers/burst-gate.js';
import type { Caches, ControllerContext, JobBus } from './controllers/context.js';
import { WriteMemo, idOf } from './controllers/expectations.js';
import { JobCredentials, SECRET_SELECTOR, slimSecret, type IdentityIssuer } from './controllers/credentials.js';
import { LearnerController } from './controllers/learner.js';
import { LABELS, MANAGED_SELECTOR, controllerOf } from './controllers/meta.js';
import { StatusPacer } from './controllers/pacing.js';
import { RLJobController } from './controllers/rljob.js';
import { RolloutPoolController } from './controllers/rolloutpool.js';

export interface ManagerOptions {
  kc: KubeConfig;
  client: KubeClient;
  /** [] → all namespaces */
  namespaces: string[];
  bus: JobBus;
  events: EventSink;
  build: BuildConfig;
  log: Logger;
  metrics?: OperatorMetrics;
  queue: QueueOptions;
  /** At most one status write per object per period (see StatusPacer). */
  statusPeriodMs: number;
  /** Issues the jobs' NATS identities (operator/nats-auth.ts); absent: an open server. */
  identities?: IdentityIssuer;
  /** What the queues' delays and the burst gate read (tests: a fake one). */
  clock?: Clock;
}

const key = (obj: KubeObject) => keyOf(obj.metadata!.namespace!, obj.metadata!.name!);

/** A pod as status reads it (pods.ts): metadata, where it was scheduled, its conditions. */
function slimPod(pod: KubeObject & { spec?: { nodeName?: string }; status?: { phase?: string; conditions?: unknown[] } }): void {
  pod.spec = pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {};
  pod.status = { ...(pod.status?.phase ? { phase: pod.status.phase } : {}), ...(pod.status?.conditions ? { conditions: pod.status.conditions } : {}) };
  if (pod.metadata?.annotations) pod.metadata.annotations = undefined;
}

export class Manager {
  readonly caches: Caches;
  readonly queues: { jobs: WorkQueue; pools: WorkQueue; learners: WorkQueue };
  private readonly jobController: RLJobController;
  private readonly credentials?: JobCredentials;
  /** Per-object memory (for the soak benchmark and tests: it must shrink as objects go). */
  readonly memo: WriteMemo;
  readonly pacer: StatusPacer;
  private synced = false;

  constructor(private readonly opts: ManagerOptions) {
    const { kc, client, namespaces, log } = opts;
    const informer = <T extends KubeObject>(type: typeof RESOURCES[keyof typeof RESOURCES], selector?: string, slim?: (obj: T) => void) =>
      new Informer<T>(kc, client, type, namespaces, log, selector, slim);
    this.caches = {
      jobs: informer(RESOURCES.rljobs),
      pools: informer(RESOURCES.rolloutpools),
      learners: informer(RESOURCES.learners),
      deployments: informer(RESOURCES.deployments, MANAGED_SELECTOR),
      statefulsets: informer(RESOURCES.statefulsets, MANAGED_SELECTOR),
      services: informer(RESOURCES.services, MANAGED_SELECTOR),
      pods: informer(RESOURCES.pods, MANAGED_SELECTOR, slimPod),
      ...(opts.identities ? { secrets: informer(RESOURCES.secrets, SECRET_SELECTOR, slimSecret) } : {}),
    } as Caches;
    this.credentials = opts.identities && this.caches.secrets ? new JobCredentials(opts.identities, this.caches.secrets, client, log) : undefined;

    const memo = new WriteMemo(opts.clock);
    // More than the caller's own reconcile waiting or running, or children we made not in the cache yet: a
    // burst is on.
    const gate = new BurstGate(() => Object.values(this.queues).reduce((n, q) => n + q.depth + q.active, 0) > 1 || memo.createdUnseen > 0, opts.clock);
    const pacer = new StatusPacer(opts.statusPeriodMs, gate);
    // What the operator remembers of an object (its writes, its status slot) goes with the object.
    for (const informer of Object.values(this.caches) as Informer<KubeObject>[]) {
      informer.onChange((obj) => memo.observed(obj, informer.type));
      informer.onDelete((obj) => { memo.forget(obj, informer.type); pacer.forget(idOf(informer.type, obj, 'status:')); });
    }
    this.memo = memo;
    this.pacer = pacer;
    const ctx: ControllerContext = {
      client, memo, pacer, caches: this.caches, bus: opts.bus, events: opts.events, config: { ...opts.build, jobCredentials: this.credentials !== undefined }, log,
      ...(this.credentials ? { credentials: this.credentials } : {}),
      enqueueJob: (k) => this.queues.jobs.add(k),
      // A Learner or RolloutPool the job controller just made: its StatefulSet or Deployment next, at once.
      created: (type, obj) => {
        if (type === RESOURCES.learners) this.queues.learners.add(key(obj));
        else if (type === RESOURCES.rolloutpools) this.queues.pools.add(key(obj));
      },
      gate,
    };
    this.jobController = new RLJobController(ctx);
    const pools = new RolloutPoolController(ctx);
    const learners = new LearnerController(ctx);
    const logged = (controller: string, reconcile: (k: string) => Promise<unknown>) => async (k: string) => {
      const started = performance.now();
      try {
        const result = await reconcile(k);
        log.trace({ controller, key: k, ms: Math.round(performance.now() - started) }, 'reconciled');
        return result as never;
      } catch (err) {
        log.warn({ controller, key: k, err: String((err as Error).message ?? err) }, 'reconcile failed; will retry');
        throw err;
      }
    };
    this.queues = {
      jobs: new WorkQueue(opts.queue, logged('rljob', (k) => this.jobController.reconcile(k)), opts.metrics?.observer('rljob'), opts.clock),
      pools: new WorkQueue(opts.queue, logged('rolloutpool', (k) => pools.reconcile(k)), opts.metrics?.observer('rolloutpool'), opts.clock),
      learners: new WorkQueue(opts.queue, logged('learner', (k) => learners.reconcile(k)), opts.metrics?.observer('learner'), opts.clock),
    };
    // Every queue drained and every child we made seen (each sighting reconciles its owner, so the last
    // one ends here too): a burst is over; what yielded to it (status, finalizers) runs now.
    const lull = () => {
      if (!Object.values(this.queues).every((q) => q.idle) || memo.createdUnseen > 0) return;
      gate.lull();
      for (const q of Object.values(this.queues)) q.wakeParked();
    };
    for (const q of Object.values(this.queues)) q.onIdle(lull);
    this.route();
  }

  /**
   * Which keys an object's change concerns. A change of an object itself (its spec) is reconciled at once;
   * a change of what it owns (children's status, pods) mostly concerns its status, which is written at most
   * once per status period anyway: those are batched over that period, as the Job controller batches pod
   * updates (a child deleted or edited by someone is put back after that much, at most).
   */
  private route(): void {
    const { caches, queues } = this;
    const batchMs = this.opts.statusPeriodMs;
    caches.jobs.onChange((job) => {
      queues.jobs.add(key(job));
      const ns = job.metadata.namespace!;
      for (const p of caches.pools.list(ns)) if (p.spec.jobRef.name === job.metadata.name) queues.pools.add(key(p));
      for (const l of caches.learners.list(ns)) if (l.spec.jobRef.name === job.metadata.name) queues.learners.add(key(l));
    });
    caches.pools.onChange((pool) => {
      queues.pools.add(key(pool));
      queues.jobs.addAfter(keyOf(pool.metadata.namespace!, pool.spec.jobRef.name), batchMs);
    });
    caches.learners.onChange((learner) => {
      queues.learners.add(key(learner));
      queues.jobs.addAfter(keyOf(learner.metadata.namespace!, learner.spec.jobRef.name), batchMs);
    });
    const toOwner = (kind: string, queue: WorkQueue) => (obj: KubeObject) => {
      const owner = controllerOf(obj);
      if (owner?.kind === kind) queue.addAfter(keyOf(obj.metadata!.namespace!, owner.name), batchMs);
    };
    caches.deployments.onChange(toOwner('RolloutPool', queues.pools));
    caches.statefulsets.onChange(toOwner('Learner', queues.learners));
    caches.services.onChange(toOwner('Learner', queues.learners));
    // A credentials Secret changed or went: its job checks it at once (pods cannot start without it).
    caches.secrets?.onChange((secret) => {
      const owner = controllerOf(secret);
      if (owner?.kind === 'RLJob') queues.jobs.add(keyOf(secret.metadata!.namespace!, owner.name));
    });
    caches.pods.onChange((pod) => {
      const labels = pod.metadata?.labels ?? {};
      const ns = pod.metadata!.namespace!;
      const pool = labels[LABELS.pool];
      const learner = labels[LABELS.learner];
      if (labels[LABELS.role] === 'rollout' && pool) queues.pools.addAfter(keyOf(ns, pool), batchMs);
      if (labels[LABELS.role] === 'learner' && learner) queues.learners.addAfter(keyOf(ns, learner), batchMs);
    });
  }

  get isSynced(): boolean { return this.synced; }

  /** Fills every cache, then starts reconciling (a half-filled cache would make children look missing). */
  async start(): Promise<void> {
    const all = Object.values(this.caches) as Informer<KubeObject>[];
    await Promise.all(all.map((i) => i.start()));
    await Promise.all(all.map((i) => i.synced));
    this.synced = true;
    // The account lists exactly the live jobs' keys: a crash may have left others (or missed a revocation).
    await this.credentials?.start(this.caches.jobs.list().filter((j) => !j.metadata.deletionTimestamp)).catch((err: unknown) => {
      this.opts.log.warn({ err: String((err as Error).message ?? err) }, 'could not push the jobs account JWT; the next job change retries');
    });
    for (const q of Object.values(this.queues)) q.start();
    this.opts.log.info({ jobs: this.caches.jobs.list().length }, 'caches synced; reconciling');
  }

  async stop(): Promise<void> {
    await Promise.all(Object.values(this.queues).map((q) => q.shutdown()));
    await this.jobController.close();
    await Promise.all((Object.values(this.caches) as Informer<KubeObject>[]).map((i) => i.stop()));
  }
}
