// Pod-level overrides shared by the unit and e2e tests: a valid set that touches every field, and the
// invalid variants of a job (each naming the field the refusal must mention).
import { firstPool as pool, type JobManifest } from './manifests.js';

/** Every override once: a model cache on a PVC, a token from a Secret, placement, priority, identity. */
export function podOverrides() {
  return {
    env: [
      { name: 'HF_HOME', value: '/cache/hf' },
      { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf-token', key: 'token', optional: true } } },
      // after the operator's own variables, so a reference to one of them resolves
      { name: 'RUN_TAG', value: '$(RLKUBE_JOB)-tag' },
    ],
    envFrom: [{ prefix: 'DS_', configMapRef: { name: 'datasets', optional: true } }],
    volumes: [{ name: 'cache', persistentVolumeClaim: { claimName: 'model-cache' } }],
    volumeMounts: [{ name: 'cache', mountPath: '/cache' }],
    imagePullSecrets: [{ name: 'registry-creds' }],
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'rlkube.dev/gpu', operator: 'In', values: ['h100'] }] }],
        },
      },
    },
    priorityClassName: 'rl-high',
    serviceAccountName: 'rl-runner',
  };
}

export interface OverrideCase { name: string; field: string; mutate: (m: JobManifest) => JobManifest }

const data = { name: 'data', emptyDir: {} };

export const OVERRIDE_INVALID_CASES: OverrideCase[] = [
  { name: 'env name the agents use', field: 'spec.rollout.pools[0].env[0].name', mutate: (m) => { pool(m).env = [{ name: 'RLKUBE_JOB', value: 'x' }]; return m; } },
  { name: 'env name the trainer uses', field: 'spec.learner.env[0].name', mutate: (m) => { m.spec.learner.env = [{ name: 'MASTER_ADDR', value: 'x' }]; return m; } },
  {
    name: 'env with value and valueFrom', field: 'spec.rollout.pools[0].env[0]',
    mutate: (m) => { pool(m).env = [{ name: 'A', value: 'x', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }]; return m; },
  },
  { name: 'env name twice', field: 'spec.rollout.pools[0].env[1]', mutate: (m) => { pool(m).env = [{ name: 'A', value: '1' }, { name: 'A', value: '2' }]; return m; } },
  { name: 'envFrom naming no source', field: 'spec.learner.envFrom[0]', mutate: (m) => { m.spec.learner.envFrom = [{ prefix: 'X_' }]; return m; } },
  { name: 'volume name the operator uses', field: 'spec.learner.volumes[0].name', mutate: (m) => { m.spec.learner.volumes = [{ name: 'checkpoints', emptyDir: {} }]; return m; } },
  {
    name: 'mount over the policies directory', field: 'spec.rollout.pools[0].volumeMounts[0].mountPath',
    mutate: (m) => { Object.assign(pool(m), { volumes: [data], volumeMounts: [{ name: 'data', mountPath: '/var/lib/rlkube/policies' }] }); return m; },
  },
  {
    name: 'relative mount path', field: 'spec.rollout.pools[0].volumeMounts[0].mountPath',
    mutate: (m) => { Object.assign(pool(m), { volumes: [data], volumeMounts: [{ name: 'data', mountPath: 'data' }] }); return m; },
  },
  {
    name: 'mount of a volume not declared', field: 'spec.rollout.pools[0].volumeMounts',
    mutate: (m) => { pool(m).volumeMounts = [{ name: 'tmp', mountPath: '/scratch' }]; return m; },
  },
  { name: 'pull secret without a name', field: 'spec.rollout.pools[0].imagePullSecrets[0].name', mutate: (m) => { pool(m).imagePullSecrets = [{}]; return m; } },
  { name: 'misspelt affinity', field: 'spec.rollout.pools[0].affinity.nodeAfinity', mutate: (m) => { pool(m).affinity = { nodeAfinity: {} }; return m; } },
  { name: 'priority class not a DNS name', field: 'spec.learner.priorityClassName', mutate: (m) => { m.spec.learner.priorityClassName = 'High_Priority'; return m; } },
  { name: 'service account not a DNS name', field: 'spec.learner.serviceAccountName', mutate: (m) => { m.spec.learner.serviceAccountName = 'Trainer SA'; return m; } },
];
