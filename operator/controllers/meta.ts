// Names, labels, finalizer and owner references of what the operator creates: deterministic, so that a
// stale cache or a restarted operator re-finds its children instead of creating twins.
import { API_VERSION } from '../../api/index.js';
import type { KubeObject } from '../kube/client.js';

export const FINALIZER = 'rlkube.dev/nats';
export const MANAGED_BY = 'rlkube.dev/operator';

export const LABELS = {
  job: 'rlkube.dev/job',
  pool: 'rlkube.dev/pool',
  learner: 'rlkube.dev/learner',
  role: 'rlkube.dev/role',
  managedBy: 'app.kubernetes.io/managed-by',
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
} as const;
export const OPERATOR_NAME = 'rlkube-operator';
/** Selects everything the operator made (the informers of Deployments, StatefulSets, Services, pods). */
export const MANAGED_SELECTOR = `${LABELS.managedBy}=${OPERATOR_NAME}`;

export const poolResourceName = (job: string, pool: string) => `${job}-${pool}`;
export const learnerResourceName = (job: string) => `${job}-learner`;
/** The Secret holding a job's NATS credentials, when the operator issues them. */
export const natsCredentialsName = (job: string) => `${job}-nats-creds`;
/** On that Secret: the public key of the account signing key that issued the job's user (revoked with the job). */
export const SIGNING_KEY_ANNOTATION = 'rlkube.dev/nats-signing-key';

export function commonLabels(job: string, component: 'rollout' | 'learner'): Record<string, string> {
  return { [LABELS.name]: 'rlkube', [LABELS.managedBy]: OPERATOR_NAME, [LABELS.component]: component, [LABELS.job]: job };
}

export interface Owner { apiVersion?: string; kind?: string; metadata?: { name?: string; uid?: string } }

/** The controller owner reference: the garbage collector deletes the child with its owner. */
export function controllerRef(owner: Owner) {
  return {
    apiVersion: owner.apiVersion ?? API_VERSION,
    kind: owner.kind!,
    name: owner.metadata!.name!,
    uid: owner.metadata!.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function controllerOf(obj: KubeObject): { kind: string; name: string; uid: string } | undefined {
  return obj.metadata?.ownerReferences?.find((r) => r.controller);
}
