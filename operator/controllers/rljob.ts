// RLJob controller: NATS resources through the bus (behind the rlkube.dev/nats finalizer), one Learner and
// one RolloutPool per spec.rollout.pools entry, and a status summarising children and learner progress.
import { environmentProblem, type EnvironmentProblem, type Learner, type RLJob, type RLJobStatus, type RolloutPool } from '../../api/index.js';
import type { Logger } from 'pino';
import { BusError } from '../../bus/errors.js';
import type { LearnerProgress } from '../../bus/index.js';
import { RESOURCES, isNotFound, type KubeObject } from '../kube/client.js';
import { splitKey, type ReconcileResult } from '../kube/queue.js';
import { findCondition, isTrue, mergeConditions, transitions, type DesiredCondition } from './conditions.js';
import { applyChild, Derived } from './apply.js';
import { JobBusLink, type BusState } from './bus-link.js';
import { natsCredentialsSecret } from './builders.js';
import type { ControllerContext } from './context.js';
import { idOf } from './expectations.js';
import { FINALIZER, LABELS, MANAGED_BY, commonLabels, controllerOf, controllerRef, learnerResourceName, natsCredentialsName, poolResourceName } from './meta.js';
import { earliest, writeStatus } from './pacing.js';

export function buildLearner(job: RLJob): Learner & KubeObject {
  return {
    apiVersion: 'rlkube.dev/v1alpha1',
    kind: 'Learner',
    metadata: {
      name: learnerResourceName(job.metadata.name), namespace: job.metadata.namespace,
      labels: commonLabels(job.metadata.name, 'learner'), ownerReferences: [controllerRef(job)],
    },
    spec: { jobRef: { name: job.metadata.name }, ...job.spec.learner } as Learner['spec'],
  };
}

export function buildPools(job: RLJob): Array<RolloutPool & KubeObject> {
  return job.spec.rollout.pools.map(({ name, ...template }) => ({
    apiVersion: 'rlkube.dev/v1alpha1',
    kind: 'RolloutPool',
    metadata: {
      name: poolResourceName(job.metadata.name, name), namespace: job.metadata.namespace,
      labels: { ...commonLabels(job.metadata.name, 'rollout'), [LABELS.pool]: name }, ownerReferences: [controllerRef(job)],
    },
    spec: { jobRef: { name: job.metadata.name }, ...template } as RolloutPool['spec'],
  }));
}

/** This operator manages the job (Kueue's MultiKueue may hand a job to another controller via managedBy). */
export const managedHere = (job: RLJob) => job.spec.managedBy === undefined || job.spec.managedBy === MANAGED_BY;

export interface JobObservation {
  job: RLJob;
  learner?: Learner;
  /** Every pool serving the job: its own and those that joined by jobRef. */
  pools: readonly RolloutPool[];
  progress?: LearnerProgress;
  /** Where the job's NATS resources stand (absent: not looked at, e.g. in tests of other things). */
  bus?: BusState;
  /** spec.environment cannot be used as written: no pods are made until it is fixed. */
  environment?: EnvironmentProblem;
  now: Date;
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const deadlineAt = (job: RLJob, startTime: string | undefined) =>
  job.spec.activeDeadlineSeconds !== undefined && startTime ? Date.parse(startTime) + job.spec.activeDeadlineSeconds * 1000 : undefined;

/** The job's status from what the children and the learner's progress record say. Pure. */
export function summarizeJob({ job, learner, pools, progress, bus, environment, now }: JobObservation): RLJobStatus {
  const before = job.status ?? {};
  const suspended = job.spec.suspend;
  const succeeded = findCondition(before.conditions, 'Succeeded');
  const failed = findCondition(before.conditions, 'Failed');
  // Finished is final: later observations do not undo Succeeded or Failed.
  const wasFinished = succeeded?.status === 'True' || failed?.status === 'True';
  const startTime = suspended && !wasFinished ? undefined : before.startTime ?? iso(now);
  const finishing: DesiredCondition[] = [];
  if (!wasFinished) {
    const deadline = deadlineAt(job, startTime);
    if (progress?.state === 'Succeeded') {
      finishing.push({ type: 'Succeeded', status: 'True', reason: progress.step >= progress.maxSteps ? 'MaxStepsReached' : 'LearnerSucceeded', message: `finished at step ${progress.step}` });
    } else if (progress?.state === 'Failed') {
      finishing.push({ type: 'Failed', status: 'True', reason: 'LearnerFailed', message: progress.message ?? 'the learner reported failure' });
    } else if (deadline !== undefined && !suspended && now.getTime() >= deadline) {
      finishing.push({ type: 'Failed', status: 'True', reason: 'DeadlineExceeded', message: `active for more than ${job.spec.activeDeadlineSeconds}s` });
    }
  }
  const finished = wasFinished || finishing.length > 0;

  const readyPools = pools.filter((p) => isTrue(p.status?.conditions, 'Ready')).length;
  const learnerReady = isTrue(learner?.status?.conditions, 'Ready');
  const degradedPool = pools.find((p) => isTrue(p.status?.conditions, 'Degraded'));
  const degradedLearner = isTrue(learner?.status?.conditions, 'Degraded') ? learner : undefined;

  const conditions: DesiredCondition[] = [];
  if (finished) conditions.push({ type: 'Ready', status: 'False', reason: 'Finished', message: 'the job has finished' });
  else if (suspended) conditions.push({ type: 'Ready', status: 'False', reason: 'Suspended', message: 'the job is suspended' });
  else if (environment) conditions.push({ type: 'Ready', status: 'False', reason: environment.reason, message: environment.message });
  else if (!learnerReady) conditions.push({ type: 'Ready', status: 'False', reason: 'LearnerNotReady', message: `learner not ready; ${readyPools}/${pools.length} pools ready` });
  else if (readyPools < pools.length) conditions.push({ type: 'Ready', status: 'False', reason: 'PoolsNotReady', message: `${readyPools}/${pools.length} pools ready` });
  else conditions.push({ type: 'Ready', status: 'True', reason: 'AllChildrenReady', message: `learner and ${pools.length} pools ready` });

  if (finished) conditions.push({ type: 'Progressing', status: 'False', reason: 'Finished' });
  else if (suspended) conditions.push({ type: 'Progressing', status: 'False', reason: 'Suspended' });
  else if (progress?.state === 'Running') conditions.push({ type: 'Progressing', status: 'True', reason: 'Training', message: `step ${progress.step}/${progress.maxSteps}` });
  else if (bus?.phase === 'Pending') conditions.push({ type: 'Progressing', status: 'True', reason: 'ProvisioningBus', message: 'creating the NATS streams, KV bucket and object store' });
  else conditions.push({ type: 'Progressing', status: 'True', reason: 'Starting', message: 'waiting for the learner to start' });

  conditions.push(suspended
    ? { type: 'Suspended', status: 'True', reason: 'JobSuspended', message: 'pods deleted; NATS state kept' }
    : { type: 'Suspended', status: 'False', reason: 'JobResumed' });

  if (environment && !finished) conditions.push({ type: 'Degraded', status: 'True', reason: environment.reason, message: environment.message });
  else if (bus?.phase === 'Failed' && !finished) conditions.push({ type: 'Degraded', status: 'True', reason: 'BusUnavailable', message: bus.message });
  else if (degradedPool && !finished) {
    const c = findCondition(degradedPool.status?.conditions, 'Degraded')!;
    conditions.push({ type: 'Degraded', status: 'True', reason: c.reason === 'InsufficientGPU' ? 'PoolInsufficientGPU' : 'PoolDegraded', message: `pool ${degradedPool.metadata.name}: ${c.message ?? c.reason}` });
  } else if (degradedLearner && !finished) {
    const c = findCondition(degradedLearner.status?.conditions, 'Degraded')!;
    conditions.push({ type: 'Degraded', status: 'True', reason: c.reason === 'InsufficientGPU' ? 'LearnerInsufficientGPU' : 'LearnerDegraded', message: c.message ?? c.reason });
  } else conditions.push({ type: 'Degraded', status: 'False', reason: 'AsExpected' });

  if (succeeded?.status === 'True') conditions.push(succeeded as DesiredCondition);
  if (failed?.status === 'True') conditions.push(failed as DesiredCondition);
  conditions.push(...finishing);

  const step = progress?.step ?? before.step ?? 0;
  const maxSteps = progress?.maxSteps ?? job.spec.algorithm.maxSteps;
  const merged = mergeConditions(before.conditions, conditions, job.metadata.generation, now);
  const completionTime = before.completionTime ?? (finished ? iso(now) : undefined);
  return {
    observedGeneration: job.metadata.generation,
    conditions: merged,
    ...(startTime ? { startTime } : {}),
    ...(completionTime ? { completionTime } : {}),
    step,
    maxSteps,
    progress: `${step}/${maxSteps}`,
    ...defined({ policyVersion: progress?.policyVersion ?? before.policyVersion, reward: progress?.reward ?? before.reward, groups: progress?.groups ?? before.groups, rejectedByReason: progress?.rejectedByReason ?? before.rejectedByReason }),
    readyPools: `${readyPools}/${pools.length}`,
    summary: summaryWord(merged),
  };
}

/** Only the keys whose value is set (a status field we do not know yet is absent, not null). */
const defined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

function summaryWord(conditions: RLJobStatus['conditions']): string {
  if (isTrue(conditions, 'Failed')) return 'Failed';
  if (isTrue(conditions, 'Succeeded')) return 'Succeeded';
  if (isTrue(conditions, 'Suspended')) return 'Suspended';
  if (isTrue(conditions, 'Degraded')) return 'Degraded';
  if (isTrue(conditions, 'Ready')) return 'Running';
  return 'Pending';
}

/** Deadlines and TTL: delete now, or come back when the next one falls due. Pure. */
export function jobTimers(job: RLJob, status: RLJobStatus, now: Date): { deleteNow: boolean; requeueAfterMs?: number } {
  const finished = isTrue(status.conditions, 'Succeeded') || isTrue(status.conditions, 'Failed');
  if (finished) {
    if (job.spec.ttlSecondsAfterFinished === undefined || !status.completionTime) return { deleteNow: false };
    const left = Date.parse(status.completionTime) + job.spec.ttlSecondsAfterFinished * 1000 - now.getTime();
    return left <= 0 ? { deleteNow: true } : { deleteNow: false, requeueAfterMs: left };
  }
  const deadline = job.spec.suspend ? undefined : deadlineAt(job, status.startTime);
  return deadline === undefined ? { deleteNow: false } : { deleteNow: false, requeueAfterMs: Math.max(0, deadline - now.getTime()) + 50 };
}

export class RLJobController {
  private readonly busLink: JobBusLink;
  private readonly learner = new Derived(buildLearner);
  private readonly pools = new Derived(buildPools);
  /** When a job without our finalizer was first reconciled (its finalizer yields to a burst from then). */
  private readonly firstSeen = new Map<string, number>();

  constructor(private readonly ctx: ControllerContext) {
    this.busLink = new JobBusLink(ctx.bus, 4, (key) => ctx.enqueueJob(key), ctx.log, ctx.events, ctx.gate);
  }

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const { caches, client, events } = this.ctx;
    const job = caches.jobs.get(namespace, name);
    if (!job) { // children (the credentials Secret too) go with the garbage collector
      this.firstSeen.delete(key);
      await this.busLink.forget(key);
      await this.ctx.credentials?.forget(key);
      return;
    }
    if (!managedHere(job)) return;
    const log = this.ctx.log.child({ job: name, namespace });
    const uid = job.metadata.uid!;

    if (job.metadata.deletionTimestamp) {
      if (!job.metadata.finalizers?.includes(FINALIZER)) return;
      await this.teardownBus(key, job, log);
      if (this.issuesCredentials(job)) await this.ctx.credentials!.revoke(job);
      await this.setFinalizer(job, false);
      log.info('NATS resources removed; finalizer dropped');
      return;
    }
    // Children first: the garbage collector removes them with the job, so they need not wait for the
    // finalizer. NATS resources do wait for it: nothing else would remove them. An environment that cannot be
    // used as written gets no pods (they would only crash or idle): the job says why until the spec is fixed.
    const environment = environmentProblem(job.spec.environment);
    const desiredPools = environment ? [] : this.pools.of(job);
    const [learner] = environment ? [caches.learners.get(namespace, learnerResourceName(name))] : await Promise.all([
      applyChild(this.ctx, RESOURCES.learners, this.learner.of(job), caches.learners.get(namespace, learnerResourceName(name))),
      ...desiredPools.map((p) => applyChild(this.ctx, RESOURCES.rolloutpools, p, caches.pools.get(namespace, p.metadata.name))),
    ]);
    const wanted = new Set(desiredPools.map((p) => p.metadata.name));
    for (const p of caches.pools.list(namespace)) {
      // A pool removed from spec.rollout.pools: delete ours (never one that joined on its own).
      if (!environment && controllerOf(p as KubeObject)?.uid === uid && !wanted.has(p.metadata.name) && !p.metadata.deletionTimestamp) {
        await client.delete(RESOURCES.rolloutpools, namespace, p.metadata.name).catch((e) => { if (!isNotFound(e)) throw e; });
      }
    }

    // The finalizer guards only the NATS resources, and those wait for a lull anyway: in a burst of
    // reconciles, both wait for the queues to drain (at most MAX_DEFER_MS after the job was first seen).
    let bus: BusState = { phase: 'Pending' };
    let deferred: number | undefined;
    const hasFinalizer = job.metadata.finalizers?.includes(FINALIZER);
    if (!hasFinalizer) {
      if (!this.firstSeen.has(key)) this.firstSeen.set(key, this.ctx.gate.clock.now());
      deferred = this.ctx.gate.yieldMs(this.firstSeen.get(key)!) || undefined;
    }
    if (deferred === undefined) {
      this.firstSeen.delete(key);
      if (!hasFinalizer) await this.setFinalizer(job, true);
      // Behind the finalizer too: only its removal revokes them.
      if (this.issuesCredentials(job)) await this.ctx.credentials!.ensure(job);
      bus = this.busLink.ensure(key, job); // only once the finalizer is on: it is what removes them
    }

    const pools = caches.pools.list(namespace).filter((p) => p.spec.jobRef.name === name && !p.metadata.deletionTimestamp);
    const now = new Date();
    const status = summarizeJob({
      job, learner: learner && (caches.learners.get(namespace, learner.metadata.name) ?? learner), pools, progress: this.busLink.progress(key), bus,
      ...(environment ? { environment } : {}), now,
    });
    const write = await writeStatus(this.ctx, RESOURCES.rljobs, job as KubeObject, status);
    if (write.written) {
      for (const c of transitions(job.status?.conditions, status.conditions ?? [])) {
        // An Event for what a person would want to hear about: a condition turning True, or a resume.
        const resumed = c.type === 'Suspended' && findCondition(job.status?.conditions, 'Suspended') !== undefined;
        if (c.type === 'Progressing' || (c.status !== 'True' && !resumed)) continue;
        const warn = (c.type === 'Failed' || c.type === 'Degraded') && c.status === 'True';
        events.record(job as KubeObject, warn ? 'Warning' : 'Normal', c.reason, c.message ?? '');
      }
    }

    const timers = jobTimers(job, status, now);
    if (timers.deleteNow) {
      log.info('ttlSecondsAfterFinished elapsed; deleting the job');
      await client.delete(RESOURCES.rljobs, namespace, name).catch((e) => { if (!isNotFound(e)) throw e; });
      return;
    }
    const requeueAfterMs = [timers.requeueAfterMs, write.retryAfterMs, deferred, bus.phase === 'Failed' ? bus.retryInMs : undefined].reduce(earliest, undefined);
    const requeueOnLull = deferred !== undefined || write.retryOnLull === true;
    return requeueAfterMs !== undefined ? { requeueAfterMs, ...(requeueOnLull ? { requeueOnLull } : {}) } : undefined;
  }

  /**
   * Removes the job's NATS resources. A job's own NATS that does not answer within its deadline (a typo, a
   * server long gone) does not keep the job forever: what it may hold there is left, said in an Event. The
   * operator's own NATS is waited for, as everything else is.
   */
  private async teardownBus(key: string, job: RLJob, log: Logger): Promise<void> {
    try {
      await this.busLink.teardown(key, job);
    } catch (err) {
      if (!(err instanceof BusError && err.reason === 'Unreachable' && job.spec.nats?.url)) throw err;
      log.warn({ err: err.message, reason: err.reason }, 'job NATS unreachable; its resources there, if any, are left');
      this.ctx.events.record(job as unknown as KubeObject, 'Warning', 'BusUnavailable', `NATS resources not removed: ${err.message}`);
    }
  }

  /** The job's pods get NATS credentials that we issue (natsCredentialsSecret names our Secret). */
  private issuesCredentials(job: RLJob): boolean {
    return this.ctx.credentials !== undefined && natsCredentialsSecret(job, this.ctx.config) === natsCredentialsName(job.metadata.name) && !job.spec.nats?.credentialsSecret;
  }

  /** Our finalizer, applied under our field manager (finalizers are a set: other owners' entries stay). */
  private async setFinalizer(job: RLJob, present: boolean): Promise<void> {
    const id = idOf(RESOURCES.rljobs, job as unknown as KubeObject, 'finalizer:');
    if (present && this.ctx.memo.recall(id, 'present')) return; // written; the cache has not caught up
    try {
      const result = await this.ctx.client.apply(RESOURCES.rljobs, {
        apiVersion: job.apiVersion, kind: job.kind,
        metadata: { name: job.metadata.name, namespace: job.metadata.namespace, uid: job.metadata.uid, finalizers: present ? [FINALIZER] : [] },
      });
      if (present) this.ctx.memo.remember(id, 'present', result);
    } catch (err) {
      if (!present && isNotFound(err)) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.busLink.close();
  }
}

