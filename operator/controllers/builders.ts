// Pure builders of pod pieces shared by the RolloutPool and Learner controllers: spec in, objects out.
import type { V1Container, V1EnvVar, V1PodSpec, V1PodTemplateSpec, V1ResourceRequirements, V1SecurityContext, V1Toleration, V1Volume } from '@kubernetes/client-node';
import {
  AGENT_ENV, DEFAULT_AGENT_METRICS_PORT, agentJobSpec, engineServerArgs, environmentServerArgs, trainerServerArgs,
  type AgentRole, type EngineKind, type EngineSpec, type LearnerTemplate, type PodOverrides, type RLJob, type Resources, type Toleration,
} from '../../api/index.js';
import { natsCredentialsName } from './meta.js';
import { withPodOverrides } from './pod-overrides.js';

/** What the operator decides that the spec does not: images, and where the bus is. */
export interface BuildConfig {
  images: { agent: string; trainer: string; vllm: string };
  /** NATS URL(s) for agents when the job sets none. */
  natsUrl: string;
  /** The operator issues each job on natsUrl its own NATS credentials (see operator/nats-auth.ts). */
  jobCredentials?: boolean;
}

/**
 * The Secret with the job's NATS credentials: the job's own (spec.nats.credentialsSecret), else the one the
 * operator issues for jobs on its server, else none (an open server).
 */
export function natsCredentialsSecret(job: RLJob, config: BuildConfig): string | undefined {
  if (job.spec.nats?.credentialsSecret) return job.spec.nats.credentialsSecret;
  return config.jobCredentials && !job.spec.nats?.url ? natsCredentialsName(job.metadata.name) : undefined;
}

export const ENGINE_PORT = 8000;
export const TRAINER_PORT = 8001;
export const ENVIRONMENT_PORT = 8002;
/** Downloaded datasets: in the pod's shared /tmp, so a user's own volume mounted there (pod overrides) keeps them. */
export const DATASET_CACHE_DIR = '/tmp/datasets';
export const RENDEZVOUS_PORT = 29500;
export const NATS_CREDS_DIR = '/etc/rlkube/nats';
export const NATS_CREDS_KEY = 'creds';
export const POLICIES_DIR = '/var/lib/rlkube/policies';
/** What images/vllm adds to vLLM: the worker extension and the route that reloads full weights. */
export const VLLM_WORKER_EXTENSION = 'rlkube_vllm.worker.RlkubeWorkerExtension';
export const VLLM_ROUTES = 'rlkube_vllm.routes.rlkube_routes';
export const CHECKPOINT_DIR = '/checkpoints';
const NON_ROOT_UID = 1000;
/**
 * Engine and trainer servers listen on every pod address: kubelet's HTTP probes come to the pod IP, not to
 * loopback (the agent beside them still talks to 127.0.0.1).
 */
export const POD_BIND_HOST = '0.0.0.0';

const quantity = (q: string | number) => String(q);

/** Container resources with GPUs as the nvidia.com/gpu extended resource (request = limit, as required). */
export function gpuResources(resources: Resources | undefined, gpus: number): V1ResourceRequirements {
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  for (const [k, v] of Object.entries(resources?.requests ?? {})) requests[k] = quantity(v);
  for (const [k, v] of Object.entries(resources?.limits ?? {})) limits[k] = quantity(v);
  if (gpus > 0) {
    requests['nvidia.com/gpu'] = String(gpus);
    limits['nvidia.com/gpu'] = String(gpus);
  }
  return {
    ...(Object.keys(requests).length > 0 ? { requests } : {}),
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
  };
}

/** GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule; a pod that asks GPUs tolerates it. */
export function podTolerations(tolerations: Toleration[] | undefined, gpus: number): V1Toleration[] {
  const out: V1Toleration[] = (tolerations ?? []).map((t) => ({ ...t }));
  if (gpus > 0 && !out.some((t) => t.key === 'nvidia.com/gpu')) {
    out.push({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
  }
  return out;
}

export function containerSecurity(readOnlyRootFilesystem: boolean): V1SecurityContext {
  return { allowPrivilegeEscalation: false, readOnlyRootFilesystem, runAsNonRoot: true, capabilities: { drop: ['ALL'] } };
}

export interface AgentEnvInput {
  job: RLJob;
  role: AgentRole;
  /** RolloutPool name (rollout agents). */
  pool?: string;
  /** The pool's engine kind (rollout agents): how the agent hands it a policy version. */
  engineKind?: EngineKind;
  config: BuildConfig;
}

/** The agent container's environment (the contract of api/agent-env.ts, docs/agent-env.md). */
export function agentEnv({ job, role, pool, engineKind, config }: AgentEnvInput): V1EnvVar[] {
  const env: V1EnvVar[] = [
    { name: AGENT_ENV.natsUrl, value: job.spec.nats?.url ?? config.natsUrl },
    ...(natsCredentialsSecret(job, config) ? [{ name: AGENT_ENV.natsCreds, value: `${NATS_CREDS_DIR}/${NATS_CREDS_KEY}` }] : []),
    { name: AGENT_ENV.namespace, value: job.metadata.namespace! },
    { name: AGENT_ENV.job, value: job.metadata.name },
    { name: AGENT_ENV.role, value: role },
    ...(role === 'rollout' ? [
      { name: AGENT_ENV.pool, value: pool! },
      { name: AGENT_ENV.engineUrl, value: `http://127.0.0.1:${ENGINE_PORT}` },
      ...(engineKind ? [{ name: AGENT_ENV.engineKind, value: engineKind }] : []),
    ] : [
      { name: AGENT_ENV.trainerUrl, value: `http://127.0.0.1:${TRAINER_PORT}` },
    ]),
    { name: AGENT_ENV.environmentUrl, value: `http://127.0.0.1:${ENVIRONMENT_PORT}` },
    { name: AGENT_ENV.workerId, valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: AGENT_ENV.jobSpec, value: JSON.stringify(agentJobSpec(job.spec, role)) },
    { name: AGENT_ENV.metricsPort, value: String(DEFAULT_AGENT_METRICS_PORT) },
  ];
  return env;
}

export function agentContainer(image: string, env: V1EnvVar[], resources: Resources | undefined, mounts: V1Container['volumeMounts']): V1Container {
  return {
    name: 'agent',
    image,
    env,
    ports: [{ name: 'metrics', containerPort: DEFAULT_AGENT_METRICS_PORT }],
    resources: gpuResources(resources ?? { requests: { cpu: '100m', memory: '256Mi' } }, 0),
    securityContext: containerSecurity(true),
    volumeMounts: mounts,
  };
}

/** The inference engine of a rollout pod: the Python engine server (tiny, or hf through transformers), or
 *  vLLM's OpenAI server on GPUs. */
export function engineContainer(engine: EngineSpec, job: RLJob, config: BuildConfig): V1Container {
  const probe = { httpGet: { path: '/health', port: ENGINE_PORT }, periodSeconds: 10 };
  const extra = engine.args ?? [];
  if (engine.kind === 'vllm') {
    const lora = job.spec.model.lora;
    return {
      name: 'engine',
      image: engine.image ?? config.images.vllm,
      args: [
        '--model', job.spec.model.name, '--host', POD_BIND_HOST, '--port', String(ENGINE_PORT),
        '--tensor-parallel-size', String(engine.gpus),
        // rlkube's vLLM image (images/vllm): full policy weights reloaded in place through one route of ours.
        '--worker-extension-cls', VLLM_WORKER_EXTENSION, '--middleware', VLLM_ROUTES,
        ...(lora ? ['--enable-lora', '--max-lora-rank', String(lora.rank)] : []),
        ...extra,
      ],
      env: [{ name: 'VLLM_ALLOW_RUNTIME_LORA_UPDATING', value: 'True' }, { name: 'HOME', value: '/tmp' }],
      ports: [{ name: 'engine', containerPort: ENGINE_PORT }],
      resources: gpuResources(engine.resources, engine.gpus),
      readinessProbe: { ...probe, initialDelaySeconds: 30 },
      // vLLM writes compile caches under $HOME and needs a large /dev/shm: no read-only root here.
      securityContext: containerSecurity(false),
      volumeMounts: [{ name: 'policies', mountPath: POLICIES_DIR }, { name: 'dshm', mountPath: '/dev/shm' }, { name: 'tmp', mountPath: '/tmp' }],
    };
  }
  return {
    name: 'engine',
    image: engine.image ?? config.images.trainer,
    command: ['python3'],
    args: [...engineServerArgs(job.spec, { host: POD_BIND_HOST, port: ENGINE_PORT }), ...extra],
    ports: [{ name: 'engine', containerPort: ENGINE_PORT }],
    resources: gpuResources(engine.resources, engine.gpus),
    readinessProbe: probe,
    securityContext: containerSecurity(true),
    volumeMounts: [{ name: 'policies', mountPath: POLICIES_DIR }, { name: 'tmp', mountPath: '/tmp' }],
  };
}

/**
 * The environment server beside each agent (docs/contracts.md): the built-in one from the trainer image, or the
 * job's own image (started with the same arguments). Its /health says 503 and why for an environment that cannot
 * be used: the pod stays unready and the agent reports the reason, rather than a crash loop.
 */
export function environmentContainer(job: RLJob, config: BuildConfig): V1Container {
  const { image, tokenSecret } = job.spec.environment;
  const args = environmentServerArgs(job.spec, { host: POD_BIND_HOST, port: ENVIRONMENT_PORT, cacheDir: DATASET_CACHE_DIR });
  return {
    name: 'environment',
    image: image ?? config.images.trainer,
    ...(image ? { args: args.slice(2) } : { command: ['python3'], args }),
    env: [
      { name: 'HOME', value: '/tmp' },
      ...(tokenSecret ? [{ name: AGENT_ENV.hfToken, valueFrom: { secretKeyRef: { name: tokenSecret.name, key: tokenSecret.key } } }] : []),
    ],
    ports: [{ name: 'environment', containerPort: ENVIRONMENT_PORT }],
    resources: { requests: { cpu: '50m', memory: '128Mi' } },
    readinessProbe: { httpGet: { path: '/health', port: ENVIRONMENT_PORT }, periodSeconds: 10 },
    securityContext: containerSecurity(true),
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
  };
}

/** The GRPO trainer of a learner pod; torch distributed finds rank 0 through the headless Service. */
export function trainerContainer(learner: LearnerTemplate, job: RLJob, learnerName: string, config: BuildConfig): V1Container {
  return {
    name: 'trainer',
    image: learner.image ?? config.images.trainer,
    command: ['python3'],
    args: trainerServerArgs(job.spec, learner, { host: POD_BIND_HOST, port: TRAINER_PORT, checkpointDir: CHECKPOINT_DIR }),
    env: [
      { name: 'MASTER_ADDR', value: `${learnerName}-0.${learnerName}` },
      { name: 'MASTER_PORT', value: String(RENDEZVOUS_PORT) },
      { name: 'WORLD_SIZE', value: String(learner.nodes) },
      { name: 'NODE_RANK', valueFrom: { fieldRef: { fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']" } } },
      { name: 'HOME', value: '/tmp' },
    ],
    ports: [{ name: 'trainer', containerPort: TRAINER_PORT }, { name: 'rendezvous', containerPort: RENDEZVOUS_PORT }],
    resources: gpuResources(learner.resources, learner.gpusPerNode),
    readinessProbe: { httpGet: { path: '/health', port: TRAINER_PORT }, periodSeconds: 10 },
    securityContext: containerSecurity(true),
    volumeMounts: [{ name: 'checkpoints', mountPath: CHECKPOINT_DIR }, { name: 'tmp', mountPath: '/tmp' }],
  };
}

/** Volumes every agent pod has; the job's NATS credentials Secret when it has one. */
export function podVolumes(job: RLJob, config: BuildConfig, extra: V1Volume[]): V1Volume[] {
  const secret = natsCredentialsSecret(job, config);
  return [
    { name: 'tmp', emptyDir: {} },
    ...extra,
    ...(secret ? [{ name: 'nats-creds', secret: { secretName: secret, items: [{ key: NATS_CREDS_KEY, path: NATS_CREDS_KEY }] } }] : []),
  ];
}

export function agentMounts(job: RLJob, config: BuildConfig, shared: { name: string; mountPath: string }): NonNullable<V1Container['volumeMounts']> {
  return [
    { name: 'tmp', mountPath: '/tmp' },
    shared,
    ...(natsCredentialsSecret(job, config) ? [{ name: 'nats-creds', mountPath: NATS_CREDS_DIR, readOnly: true }] : []),
  ];
}

export interface PodTemplateInput {
  labels: Record<string, string>;
  containers: V1Container[];
  volumes: V1Volume[];
  nodeSelector?: Record<string, string>;
  tolerations: V1Toleration[];
  subdomain?: string;
  /** The pool's or learner's env, volumes, pull secrets, affinity, priority class and service account. */
  overrides?: PodOverrides;
}

/** Non-root pods, no service-account token (agents talk to NATS, not to the API server). */
export function podTemplate(input: PodTemplateInput): V1PodTemplateSpec {
  const spec: V1PodSpec = {
    containers: input.containers,
    volumes: input.volumes,
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: { runAsNonRoot: true, runAsUser: NON_ROOT_UID, runAsGroup: NON_ROOT_UID, fsGroup: NON_ROOT_UID, seccompProfile: { type: 'RuntimeDefault' } },
    ...(input.nodeSelector && Object.keys(input.nodeSelector).length > 0 ? { nodeSelector: input.nodeSelector } : {}),
    ...(input.tolerations.length > 0 ? { tolerations: input.tolerations } : {}),
    ...(input.subdomain ? { subdomain: input.subdomain } : {}),
  };
  return { metadata: { labels: input.labels }, spec: withPodOverrides(spec, input.overrides) };
}
