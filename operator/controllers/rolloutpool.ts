// RolloutPool controller: a Deployment of engine + agent pods for the job named by spec.jobRef, and a
// status that says whether the pods run, and why not (no GPUs to be had, no such job).
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import type { RLJob, RolloutPool, RolloutPoolStatus } from '../../api/index.js';
import { RESOURCES, type KubeObject } from '../kube/client.js';
import type { ReconcileResult } from '../kube/queue.js';
import { splitKey } from '../kube/queue.js';
import { agentContainer, agentEnv, agentMounts, engineContainer, environmentContainer, podTemplate, podTolerations, podVolumes, POLICIES_DIR, type BuildConfig } from './builders.js';
import { applyChild, Derived, isInvalid } from './apply.js';
import { mergeConditions, transitions, type DesiredCondition } from './conditions.js';
import type { ControllerContext } from './context.js';
import { idOfName } from './expectations.js';
import { jobFinished, liveJob } from './job-state.js';
import { LABELS, commonLabels, controllerRef } from './meta.js';
import { retryOf, writeStatus } from './pacing.js';
import { isPodReady, schedulingProblem } from './pods.js';

/** A finished job keeps its pools but not their pods (GPUs go back), as a suspended one does. */
export const poolSuspended = (pool: RolloutPool, job: RLJob) => pool.spec.suspend || job.spec.suspend || jobFinished(job);

export const poolSelector = (pool: RolloutPool) => ({ [LABELS.pool]: pool.metadata.name });

export function buildDeployment(pool: RolloutPool, job: RLJob, config: BuildConfig): V1Deployment & KubeObject {
  const name = pool.metadata.name;
  const labels = { ...commonLabels(job.metadata.name, 'rollout'), [LABELS.role]: 'rollout', ...poolSelector(pool) };
  const { engine, agent } = pool.spec;
  const gpus = engine.gpus;
  const shared = { name: 'policies', mountPath: POLICIES_DIR };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: pool.metadata.namespace, labels, ownerReferences: [controllerRef(pool)] },
    spec: {
      replicas: poolSuspended(pool, job) ? 0 : pool.spec.replicas,
      selector: { matchLabels: poolSelector(pool) },
      // Replace pods one at a time without a surge: a surge pod would need GPUs the pool may not have.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } },
      template: podTemplate({
        labels,
        containers: [
          engineContainer(engine, job, config),
          environmentContainer(job, config),
          agentContainer(agent.image ?? config.images.agent, agentEnv({ job, role: 'rollout', pool: name, engineKind: engine.kind, config }), agent.resources, agentMounts(job, config, shared)),
        ],
        volumes: podVolumes(job, config, [
          { name: 'policies', emptyDir: {} },
          ...(engine.kind === 'vllm' ? [{ name: 'dshm', emptyDir: { medium: 'Memory' } }] : []),
        ]),
        nodeSelector: pool.spec.nodeSelector,
        tolerations: podTolerations(pool.spec.tolerations, gpus),
        overrides: pool.spec,
      }),
    },
  };
}

export interface PoolObservation {
  pool: RolloutPool;
  job?: RLJob;
  deployment?: V1Deployment;
  pods: readonly V1Pod[];
  /** The API server refused the Deployment (message), e.g. an invalid nodeSelector. */
  applyError?: string;
  now: Date;
}

export function summarizePool({ pool, job, deployment, pods, applyError, now }: PoolObservation): RolloutPoolStatus {
  const desired = job && !poolSuspended(pool, job) ? pool.spec.replicas : 0;
  const ready = pods.filter(isPodReady).length;
  const problem = schedulingProblem(pods);
  const conditions: DesiredCondition[] = [];
  if (!job) {
    const message = `RLJob ${pool.spec.jobRef.name} not found in namespace ${pool.metadata.namespace}`;
    conditions.push({ type: 'Ready', status: 'False', reason: 'JobNotFound', message });
    conditions.push({ type: 'Degraded', status: 'True', reason: 'JobNotFound', message });
  } else {
    const suspended = poolSuspended(pool, job);
    if (suspended) conditions.push({ type: 'Ready', status: 'False', reason: 'Suspended', message: 'pool scaled to zero' });
    else if (ready >= desired) conditions.push({ type: 'Ready', status: 'True', reason: 'AllReplicasReady', message: `${ready}/${desired} replicas ready` });
    else conditions.push({ type: 'Ready', status: 'False', reason: 'ReplicasNotReady', message: `${ready}/${desired} replicas ready` });
    conditions.push({ type: 'Suspended', status: suspended ? 'True' : 'False', reason: suspended ? 'Suspended' : 'Running' });
    if (applyError) conditions.push({ type: 'Degraded', status: 'True', reason: 'DeploymentRejected', message: applyError });
    else if (problem && !suspended) conditions.push({ type: 'Degraded', status: 'True', reason: problem.reason, message: problem.message });
    else conditions.push({ type: 'Degraded', status: 'False', reason: 'AsExpected' });
  }
  return {
    observedGeneration: pool.metadata.generation,
    conditions: mergeConditions(pool.status?.conditions, conditions, pool.metadata.generation, now),
    replicas: deployment?.status?.replicas ?? 0,
    readyReplicas: ready,
    selector: `${LABELS.pool}=${pool.metadata.name}`,
  };
}

export class RolloutPoolController {
  private readonly deployment = new Derived(buildDeployment);
  constructor(private readonly ctx: ControllerContext) {}

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const { caches, client, events } = this.ctx;
    // Just created by the job controller: its Deployment need not wait for the watch to deliver it.
    const pool = caches.pools.get(namespace, name) ?? this.ctx.memo.created<RolloutPool & KubeObject>(idOfName(RESOURCES.rolloutpools, namespace, name));
    if (!pool || pool.metadata.deletionTimestamp) return; // the garbage collector removes the Deployment
    const log = this.ctx.log.child({ pool: name, namespace, job: pool.spec.jobRef.name });
    const job = liveJob(caches, namespace, pool.spec.jobRef.name);
    let deployment = caches.deployments.get(namespace, name);
    let applyError: string | undefined;
    if (job) {
      try {
        deployment = await applyChild(this.ctx, RESOURCES.deployments, this.deployment.of(pool, job, this.ctx.config), deployment);
      } catch (err) {
        if (!isInvalid(err)) throw err;
        applyError = err.message;
      }
    } else if (deployment && (deployment.spec?.replicas ?? 0) > 0) {
      // No job to serve: stop the pods, keep the Deployment for when the job comes back.
      await client.mergePatch(RESOURCES.deployments, namespace, name, { spec: { replicas: 0 } });
    }
    const pods = caches.pods.list(namespace).filter((p) => p.metadata?.labels?.[LABELS.pool] === name);
    const status = summarizePool({ pool, job, deployment, pods, applyError, now: new Date() });
    const write = await writeStatus(this.ctx, RESOURCES.rolloutpools, pool as KubeObject, status);
    if (write.written) {
      for (const c of transitions(pool.status?.conditions, status.conditions ?? [])) {
        if (c.type === 'Degraded' && c.status === 'True') events.record(pool as KubeObject, 'Warning', c.reason, c.message ?? '');
        if (c.type === 'Ready' && c.status === 'True') events.record(pool as KubeObject, 'Normal', c.reason, c.message ?? '');
      }
      log.debug({ ready: status.readyReplicas }, 'pool status updated');
    }
    return retryOf(write);
  }
}
