// Schema pieces shared by the three kinds: conditions, pod placement, resources, pool and learner templates.
import { Type, type Static } from '@sinclair/typebox';
import { mountsNameVolumes, podOverrideFields } from './pod-overrides.js';
import { DnsLabel, Enum, Image, Quantity, StringMap, defaultsToFilled, withRules, type Rule } from './schema-kit.js';

export const GROUP = 'rlkube.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Longest RLJob name: children are `<job>-<pool>` and `<job>-learner`, and StatefulSet pods need room. */
export const MAX_JOB_NAME = 40;
/** Longest pool entry name, so that `<job>-<pool>` stays a DNS label. */
export const MAX_POOL_NAME = 20;

export const ConditionStatus = Enum(['True', 'False', 'Unknown'] as const);
export const Condition = Type.Object({
  type: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Z][A-Za-z0-9]*$' }),
  status: ConditionStatus,
  reason: Type.String({ minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' }),
  message: Type.Optional(Type.String({ maxLength: 32768 })),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  lastTransitionTime: Type.String({ format: 'date-time' }),
});
export type Condition = Static<typeof Condition>;

/** status.conditions: a list-map keyed by type, as kubectl and SSA expect. */
export function Conditions() {
  return Type.Array(Condition, { maxItems: 16, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] });
}

export const Toleration = Type.Object({
  key: Type.Optional(Type.String({ maxLength: 317 })),
  operator: Type.Optional(Enum(['Exists', 'Equal'] as const)),
  value: Type.Optional(Type.String({ maxLength: 63 })),
  effect: Type.Optional(Enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const)),
  tolerationSeconds: Type.Optional(Type.Integer()),
});
export type Toleration = Static<typeof Toleration>;

const ResourceList = Type.Record(Type.String({ maxLength: 317 }), Quantity(), { maxProperties: 16 });
/** Container resources; GPUs are asked through the `gpus` field next to it, never here. */
export const Resources = withRules(Type.Object({
  requests: Type.Optional(ResourceList),
  limits: Type.Optional(ResourceList),
}), [{
  rule: "(!has(self.limits) || !('nvidia.com/gpu' in self.limits)) && (!has(self.requests) || !('nvidia.com/gpu' in self.requests))",
  message: 'nvidia.com/gpu must not be set in resources: ask for GPUs with the gpus field',
  check: (self) => !('nvidia.com/gpu' in (self.limits ?? {})) && !('nvidia.com/gpu' in (self.requests ?? {})),
}]);
export type Resources = Static<typeof Resources>;

/** tiny: the built-in policy (CPU); hf: transformers generate (CPU or GPU: tests, small jobs); vllm: GPU. */
export const EngineKind = Enum(['tiny', 'hf', 'vllm'] as const, { default: 'tiny' });
export type EngineKind = Static<typeof EngineKind>;

export const EngineSpec = defaultsToFilled(withRules(Type.Object({
  kind: EngineKind,
  image: Type.Optional(Image()),
  gpus: Type.Integer({ minimum: 0, maximum: 16, default: 0 }),
  resources: Type.Optional(Resources),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 64 })),
}, { additionalProperties: false }), [{
  rule: "self.kind != 'vllm' || self.gpus >= 1",
  message: 'engine.gpus must be >= 1 when engine.kind is vllm',
  fieldPath: '.gpus',
  check: (self) => self.kind !== 'vllm' || self.gpus >= 1,
}]));
export type EngineSpec = Static<typeof EngineSpec>;

export const AgentSpec = defaultsToFilled(Type.Object({
  image: Type.Optional(Image()),
  resources: Type.Optional(Resources),
}, { additionalProperties: false }));
export type AgentSpec = Static<typeof AgentSpec>;

/** What a rollout pool is, without its identity: shared by spec.rollout.pools[] and RolloutPool.spec. */
export const poolFields = {
  replicas: Type.Integer({ minimum: 0, maximum: 1024, default: 1 }),
  engine: EngineSpec,
  agent: AgentSpec,
  nodeSelector: Type.Optional(StringMap()),
  tolerations: Type.Optional(Type.Array(Toleration, { maxItems: 32 })),
  ...podOverrideFields,
};

export const PoolTemplate = withRules(Type.Object({
  name: DnsLabel(MAX_POOL_NAME),
  ...poolFields,
}, { additionalProperties: false }), [mountsNameVolumes]);
export type PoolTemplate = Static<typeof PoolTemplate>;

export const Checkpoint = defaultsToFilled(Type.Object({
  size: Quantity({ default: '1Gi' }),
  storageClassName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
  everySteps: Type.Integer({ minimum: 1, default: 10 }),
}, { additionalProperties: false }));
export type Checkpoint = Static<typeof Checkpoint>;

/** What a learner is, without its identity: shared by spec.learner and Learner.spec. */
export const learnerFields = {
  nodes: Type.Integer({ minimum: 1, maximum: 256, default: 1 }),
  gpusPerNode: Type.Integer({ minimum: 0, maximum: 16, default: 0 }),
  image: Type.Optional(Image()),
  resources: Type.Optional(Resources),
  agent: AgentSpec,
  checkpoint: Checkpoint,
  /**
   * At most this many completions per forward/backward pass of the trainer (gradients accumulate over them):
   * bounds its peak memory, not what it learns.
   */
  microBatch: Type.Integer({ minimum: 1, maximum: 4096, default: 16 }),
  /**
   * At most this many padded tokens per forward/backward pass (rows × their longest prompt+completion; a longer
   * one goes alone): what bounds memory when completions are long and uneven. The default is verl's
   * (ppo_max_token_len_per_gpu) and above what `npm run bench -- gpu` trains per pass (16 × 768 tokens); the tiny
   * policy never reaches it. Lower it for large models; raise it above microBatch × the longest sequence for rows only.
   */
  microBatchTokens: Type.Integer({ minimum: 1, maximum: 1048576, default: 16384 }),
  nodeSelector: Type.Optional(StringMap()),
  tolerations: Type.Optional(Type.Array(Toleration, { maxItems: 32 })),
  ...podOverrideFields,
};
const multiNodeNeedsGpus: Rule<{ nodes: number; gpusPerNode: number }> = {
  rule: 'self.nodes == 1 || self.gpusPerNode >= 1',
  message: 'gpusPerNode must be >= 1 when nodes > 1 (multi-node training is GPU-only)',
  fieldPath: '.gpusPerNode',
  check: (self) => self.nodes === 1 || self.gpusPerNode >= 1,
};
export const LearnerTemplate = defaultsToFilled(withRules(Type.Object(learnerFields, { additionalProperties: false }), [multiNodeNeedsGpus, mountsNameVolumes]));
export type LearnerTemplate = Static<typeof LearnerTemplate>;
export { multiNodeNeedsGpus };

/** The job a pool or learner serves (same namespace). */
export const JobRef = Type.Object({ name: DnsLabel(MAX_JOB_NAME) }, { additionalProperties: false });
export type JobRef = Static<typeof JobRef>;

/** Object metadata as far as our schemas check it (the API server checks the rest). */
export function Metadata(maxNameLength: number) {
  return Type.Object({
    name: DnsLabel(maxNameLength),
    namespace: Type.Optional(Type.String({ maxLength: 63 })),
  }, { additionalProperties: true });
}
