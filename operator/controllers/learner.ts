// Learner controller: a StatefulSet of trainer + agent pods with a checkpoint volume each, and the headless
// Service that gives them stable names for torch distributed rendezvous.
import type { V1Pod, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Learner, LearnerStatus, RLJob } from '../../api/index.js';
import { RESOURCES, type KubeObject } from '../kube/client.js';
import { splitKey, type ReconcileResult } from '../kube/queue.js';
import { CHECKPOINT_DIR, RENDEZVOUS_PORT, agentContainer, agentEnv, agentMounts, environmentContainer, podTemplate, podTolerations, podVolumes, trainerContainer, type BuildConfig } from './builders.js';
import { mergeConditions, transitions, type DesiredCondition } from './conditions.js';
import { applyChild, Derived, isInvalid } from './apply.js';
import type { ControllerContext } from './context.js';
import { idOfName } from './expectations.js';
import { jobFinished, liveJob } from './job-state.js';
import { LABELS, commonLabels, controllerRef } from './meta.js';
import { retryOf, writeStatus } from './pacing.js';
import { isPodReady, schedulingProblem } from './pods.js';

export const learnerSuspended = (learner: Learner, job: RLJob) => learner.spec.suspend || job.spec.suspend || jobFinished(job);
const selectorOf = (learner: Learner) => ({ [LABELS.learner]: learner.metadata.name });
const labelsOf = (learner: Learner) => ({ ...commonLabels(learner.spec.jobRef.name, 'learner'), [LABELS.role]: 'learner', ...selectorOf(learner) });

export function buildLearnerService(learner: Learner): V1Service & KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: learner.metadata.name, namespace: learner.metadata.namespace, labels: labelsOf(learner), ownerReferences: [controllerRef(learner)] },
    spec: {
      clusterIP: 'None',
      // Rank 0 must be resolvable before it is Ready: the others rendezvous with it while it starts.
      publishNotReadyAddresses: true,
      selector: selectorOf(learner),
      ports: [{ name: 'rendezvous', port: RENDEZVOUS_PORT, targetPort: RENDEZVOUS_PORT }],
    },
  };
}

export function buildStatefulSet(learner: Learner, job: RLJob, config: BuildConfig): V1StatefulSet & KubeObject {
  const name = learner.metadata.name;
  const spec = learner.spec;
  const labels = labelsOf(learner);
  const { checkpoint } = spec;
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, namespace: learner.metadata.namespace, labels, ownerReferences: [controllerRef(learner)] },
    spec: {
      serviceName: name,
      replicas: learnerSuspended(learner, job) ? 0 : spec.nodes,
      // All ranks start together; torch distributed waits for the full world anyway.
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: selectorOf(learner) },
      // Checkpoints outlive suspension and scale-down: a resumed learner continues from its last one.
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Delete', whenScaled: 'Retain' },
      template: podTemplate({
        labels,
        containers: [
          trainerContainer(spec, job, name, config),
          environmentContainer(job, config),
          agentContainer(spec.agent.image ?? config.images.agent, agentEnv({ job, role: 'learner', config }), spec.agent.resources,
            agentMounts(job, config, { name: 'checkpoints', mountPath: CHECKPOINT_DIR })),
        ],
        volumes: podVolumes(job, config, []),
        nodeSelector: spec.nodeSelector,
        tolerations: podTolerations(spec.tolerations, spec.gpusPerNode),
        subdomain: name,
        overrides: spec,
      }),
      volumeClaimTemplates: [{
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'checkpoints', labels },
        spec: {
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: String(checkpoint.size) } },
          ...(checkpoint.storageClassName ? { storageClassName: checkpoint.storageClassName } : {}),
        },
      }],
    },
  };
}

export interface LearnerObservation {
  learner: Learner;
  job?: RLJob;
  statefulSet?: V1StatefulSet;
  pods: readonly V1Pod[];
  applyError?: string;
  now: Date;
}

export function summarizeLearner({ learner, job, statefulSet, pods, applyError, now }: LearnerObservation): LearnerStatus {
  const ready = pods.filter(isPodReady).length;
  const conditions: DesiredCondition[] = [];
  if (!job) {
    const message = `RLJob ${learner.spec.jobRef.name} not found in namespace ${learner.metadata.namespace}`;
    conditions.push({ type: 'Ready', status: 'False', reason: 'JobNotFound', message }, { type: 'Degraded', status: 'True', reason: 'JobNotFound', message });
  } else {
    const suspended = learnerSuspended(learner, job);
    const desired = suspended ? 0 : learner.spec.nodes;
    const problem = schedulingProblem(pods);
    if (suspended) conditions.push({ type: 'Ready', status: 'False', reason: 'Suspended', message: 'learner scaled to zero' });
    else if (ready >= desired) conditions.push({ type: 'Ready', status: 'True', reason: 'AllNodesReady', message: `${ready}/${desired} nodes ready` });
    else conditions.push({ type: 'Ready', status: 'False', reason: 'NodesNotReady', message: `${ready}/${desired} nodes ready` });
    conditions.push({ type: 'Suspended', status: suspended ? 'True' : 'False', reason: suspended ? 'Suspended' : 'Running' });
    if (applyError) conditions.push({ type: 'Degraded', status: 'True', reason: 'StatefulSetRejected', message: applyError });
    else if (problem && !suspended) conditions.push({ type: 'Degraded', status: 'True', reason: problem.reason, message: problem.message });
    else conditions.push({ type: 'Degraded', status: 'False', reason: 'AsExpected' });
  }
  return {
    observedGeneration: learner.metadata.generation,
    conditions: mergeConditions(learner.status?.conditions, conditions, learner.metadata.generation, now),
    replicas: statefulSet?.status?.replicas ?? 0,
    readyReplicas: ready,
  };
}

export class LearnerController {
  private readonly service = new Derived(buildLearnerService);
  private readonly statefulSet = new Derived(buildStatefulSet);
  constructor(private readonly ctx: ControllerContext) {}

  async reconcile(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const { caches, client, events } = this.ctx;
    // Just created by the job controller: its StatefulSet need not wait for the watch to deliver it.
    const learner = caches.learners.get(namespace, name) ?? this.ctx.memo.created<Learner & KubeObject>(idOfName(RESOURCES.learners, namespace, name));
    if (!learner || learner.metadata.deletionTimestamp) return;
    const job = liveJob(caches, namespace, learner.spec.jobRef.name);
    let statefulSet = caches.statefulsets.get(namespace, name);
    let applyError: string | undefined;
    if (job) {
      try {
        [, statefulSet] = await Promise.all([
          applyChild(this.ctx, RESOURCES.services, this.service.of(learner), caches.services.get(namespace, name)),
          applyChild(this.ctx, RESOURCES.statefulsets, this.statefulSet.of(learner, job, this.ctx.config), statefulSet),
        ]);
      } catch (err) {
        if (!isInvalid(err)) throw err;
        applyError = err.message; // e.g. a changed checkpoint size: volumeClaimTemplates are immutable
      }
    } else if (statefulSet && (statefulSet.spec?.replicas ?? 0) > 0) {
      await client.mergePatch(RESOURCES.statefulsets, namespace, name, { spec: { replicas: 0 } });
    }
    const pods = caches.pods.list(namespace).filter((p) => p.metadata?.labels?.[LABELS.learner] === name);
    const status = summarizeLearner({ learner, job, statefulSet, pods, applyError, now: new Date() });
    const write = await writeStatus(this.ctx, RESOURCES.learners, learner as KubeObject, status);
    if (write.written) {
      for (const c of transitions(learner.status?.conditions, status.conditions ?? [])) {
        if (c.type === 'Degraded' && c.status === 'True') events.record(learner as KubeObject, 'Warning', c.reason, c.message ?? '');
      }
    }
    return retryOf(write);
  }
}
