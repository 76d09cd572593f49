// RLJob (rlkube.dev/v1alpha1): one RL post-training run. The schema is the one source of the TS type,
// the runtime validation and the CRD.
import { Type, type Static } from '@sinclair/typebox';
import { Conditions, LearnerTemplate, MAX_JOB_NAME, Metadata, PoolTemplate } from './common.js';
import { ENVIRONMENT_CATALOGUE } from './environment-check.js';
import { Enum, Image, NatsUrl, defaultsToFilled, withRules, type Rule } from './schema-kit.js';

export const SyncMode = Enum(['SequentialPull', 'AsyncPushPull'] as const, { default: 'SequentialPull' });
export type SyncMode = Static<typeof SyncMode>;
/** The environments the environment server (python/rlkube_env) knows, from its catalogue; any other name needs environment.image. */
export const ENVIRONMENT_NAMES: readonly string[] = ENVIRONMENT_CATALOGUE.map((environment) => environment.name);
/** The built-in character-level policy; any other model name is a Hugging Face hub id or a model folder's path. */
export const TINY_MODEL = 'tiny';

export const ModelSpec = withRules(Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s]+$' }),
  lora: Type.Optional(Type.Object({
    rank: Type.Integer({ minimum: 1, maximum: 1024, default: 8 }),
    alpha: Type.Number({ exclusiveMinimum: 0, default: 16 }),
  }, { additionalProperties: false })),
  maxTokens: Type.Integer({ minimum: 1, maximum: 131072, default: 64 }),
}, { additionalProperties: false }), [{
  rule: "self.name != 'tiny' || !has(self.lora)",
  message: 'model.lora is only for Hugging Face models, not the built-in tiny model',
  fieldPath: '.lora',
  check: (self) => self.name !== TINY_MODEL || self.lora === undefined,
}]);

const ArgValue = Type.Union([Type.String({ maxLength: 1024 }), Type.Number()], { 'x-kubernetes-preserve-unknown-fields': true });
export const EnvironmentSpec = withRules(Type.Object({
  /** A built-in (ENVIRONMENT_NAMES), or any name for a custom environment image. */
  name: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$' }),
  // Values are strings or numbers; the CRD cannot type a map of either, so only local validation checks it.
  args: Type.Optional(Type.Record(Type.String({ maxLength: 63 }), ArgValue, { maxProperties: 32 })),
  /** JSONL or Parquet: a path in the pods, an http(s) URL (downloaded once), or hf:<owner>/<name>[:<config>[:<split>]]. */
  dataset: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
  /** A custom environment server speaking the contract of docs/contracts.md instead of the built-in one. */
  image: Type.Optional(Image()),
  /** A Secret whose key (default `token`) the environment servers get as HF_TOKEN (private hub datasets). */
  tokenSecret: Type.Optional(Type.Object({
    name: Type.String({ pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', maxLength: 253 }),
    key: Type.String({ minLength: 1, maxLength: 253, default: 'token' }),
  }, { additionalProperties: false })),
}, { additionalProperties: false }), [{
  rule: `has(self.image) || self.name in [${ENVIRONMENT_NAMES.map((n) => `'${n}'`).join(', ')}]`,
  message: `environment.name must be one of ${ENVIRONMENT_NAMES.join(', ')} (or environment.image names a custom environment server)`,
  fieldPath: '.name',
  check: (self) => self.image !== undefined || ENVIRONMENT_NAMES.includes(self.name),
}]);
export type EnvironmentSpec = Static<typeof EnvironmentSpec>;

/**
 * What is learnt and how: the trainer's settings (python/rlkube_trainer/config.py, where each is described)
 * beside the batch's shape. Their defaults are the trainer's (api/generated/trainer-config.json, checked by
 * test/unit/api-trainer-config.test.ts); how the learner fits them into memory is spec.learner's (microBatch, microBatchTokens).
 */
export const AlgorithmSpec = defaultsToFilled(Type.Object({
  groupSize: Type.Integer({ minimum: 2, maximum: 1024, default: 8 }),
  batchSize: Type.Integer({ minimum: 1, maximum: 65536, default: 32 }),
  maxSteps: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 100 }),
  learningRate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.001 }),
  temperature: Type.Number({ exclusiveMinimum: 0, maximum: 10, default: 1.0 }),
  clipLow: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: 0.2 }),
  clipHigh: Type.Number({ minimum: 0, maximum: 10, default: 0.28 }),
  klCoef: Type.Number({ minimum: 0, default: 0 }),
  /** Truncation of the importance weights of off-policy groups (older policy version, within maxStaleness; 1: they are only ever down-weighted, as V-trace does). */
  isCap: Type.Number({ minimum: 1, default: 2.0 }),
  /** Optimizer steps per train step: the batch's groups split into this many minibatches (PPO-style). */
  minibatches: Type.Integer({ minimum: 1, maximum: 1024, default: 8 }),
  /** Gradients are clipped to this global norm before each optimizer step. */
  maxGradNorm: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, default: 1.0 }),
  adamBeta1: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: 0.9 }),
  adamBeta2: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: 0.999 }),
  /** Groups whose rewards are all equal (no advantage) are left out of the token mean, not diluting it. */
  skipUniformGroups: Type.Boolean({ default: false }),
  seed: Type.Integer({ minimum: 0, default: 1 }),
}, { additionalProperties: false }));

export const SyncSpec = defaultsToFilled(withRules(Type.Object({
  mode: SyncMode,
  maxStaleness: Type.Integer({ minimum: 0, maximum: 1024, default: 1 }),
  taskWindow: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  /**
   * A task handed out this many times without a group coming back (its worker died, hung past the ack wait,
   * or released it on an engine error) is a poison task: it goes to the job's dead letters, is counted
   * (status.groups.deadLetteredTasks), and the job goes on without it.
   */
  maxTaskDeliveries: Type.Integer({ minimum: 1, maximum: 1000, default: 5 }),
}, { additionalProperties: false }), [{
  // Decided: the mode is fixed for a run. The learner's consumers and the tasks already issued are
  // tagged for one mode; switching mid-run would mix their semantics. Start a new job instead.
  rule: 'self.mode == oldSelf.mode',
  message: 'sync.mode is immutable',
  fieldPath: '.mode',
}]));

export const VerificationSpec = defaultsToFilled(Type.Object({
  rewardTolerance: Type.Number({ minimum: 0, default: 0.000001 }),
  logprobTolerance: Type.Number({ minimum: 0, default: 0.10 }),
  sampledPositions: Type.Integer({ minimum: 1, maximum: 4096, default: 32 }),
}, { additionalProperties: false }));

export const RolloutSpec = withRules(Type.Object({
  pools: Type.Array(PoolTemplate, {
    minItems: 1, maxItems: 16, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'],
  }),
}, { additionalProperties: false }), [{
  rule: 'self.pools.all(p, self.pools.exists_one(q, q.name == p.name))',
  message: 'rollout.pools names must be unique',
  fieldPath: '.pools',
  check: (self) => new Set(self.pools.map((p: { name: string }) => p.name)).size === self.pools.length,
}]);

export const NatsSpec = Type.Object({
  url: Type.Optional(NatsUrl()),
  credentialsSecret: Type.Optional(Type.String({ pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', maxLength: 253 })),
}, { additionalProperties: false });

/** The task window holds at least one batch (the agents' spec carries the same rule). */
export const taskWindowRule: Rule<{ sync: { taskWindow?: number }; algorithm: { batchSize: number } }> = {
  rule: '!has(self.sync.taskWindow) || self.sync.taskWindow >= self.algorithm.batchSize',
  message: 'sync.taskWindow must be >= algorithm.batchSize',
  fieldPath: '.sync.taskWindow',
  check: (self) => self.sync.taskWindow === undefined || self.sync.taskWindow >= self.algorithm.batchSize,
};

export const RLJobSpec = withRules(Type.Object({
  managedBy: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9.-]+/[a-zA-Z0-9._-]+$' })),
  suspend: Type.Boolean({ default: false }),
  activeDeadlineSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
  ttlSecondsAfterFinished: Type.Optional(Type.Integer({ minimum: 0 })),
  model: ModelSpec,
  environment: EnvironmentSpec,
  algorithm: AlgorithmSpec,
  sync: SyncSpec,
  verification: VerificationSpec,
  rollout: RolloutSpec,
  learner: LearnerTemplate,
  nats: Type.Optional(NatsSpec),
}, { additionalProperties: false }), [
  {
    // Kueue compatibility: who manages the job is fixed at creation (set, changed or removed: refused).
    rule: 'has(self.managedBy) == has(oldSelf.managedBy) && (!has(self.managedBy) || self.managedBy == oldSelf.managedBy)',
    message: 'managedBy is immutable',
    fieldPath: '.managedBy',
  },
  taskWindowRule,
  {
    rule: "self.rollout.pools.all(p, (p.engine.kind == 'tiny') == (self.model.name == 'tiny'))",
    message: 'rollout.pools[].engine.kind must be tiny for model tiny, and hf or vllm for a Hugging Face model',
    fieldPath: '.rollout.pools',
    check: (self) => self.rollout.pools.every((p: { engine: { kind: string } }) =>
      (p.engine.kind === 'tiny') === (self.model.name === TINY_MODEL)),
  },
]);
export type RLJobSpec = Static<typeof RLJobSpec>;

export const GroupCounts = Type.Object({
  accepted: Type.Integer({ minimum: 0 }),
  stale: Type.Integer({ minimum: 0 }),
  rejected: Type.Integer({ minimum: 0 }),
  published: Type.Integer({ minimum: 0 }),
  /** Groups published but not used when the run ended (neither trained on, stale nor rejected): with them,
   * accepted + stale + rejected + leftOver = published. */
  leftOver: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Of the accepted: made by an older policy version than the one trained on them (AsyncPushPull, within
   * maxStaleness), their loss importance-weighted. */
  offPolicy: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Tasks given up after spec.sync.maxTaskDeliveries deliveries: no group came of them (not in published). */
  deadLetteredTasks: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type GroupCounts = Static<typeof GroupCounts>;

export const RLJobStatus = Type.Object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(Conditions()),
  /** When the job (last) started running; cleared while suspended, so the deadline counts active time. */
  startTime: Type.Optional(Type.String({ format: 'date-time' })),
  completionTime: Type.Optional(Type.String({ format: 'date-time' })),
  step: Type.Optional(Type.Integer({ minimum: 0 })),
  maxSteps: Type.Optional(Type.Integer({ minimum: 0 })),
  /** "step/maxSteps", for the printer column. */
  progress: Type.Optional(Type.String({ maxLength: 32 })),
  policyVersion: Type.Optional(Type.Integer({ minimum: 0 })),
  reward: Type.Optional(Type.Number()),
  groups: Type.Optional(GroupCounts),
  /** The rejected groups by reason (Copied, BadSignature, RewardMismatch, LogprobMismatch, …): they add up to groups.rejected. */
  rejectedByReason: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Integer({ minimum: 0 }))),
  /** "ready/total" pools, for the printer column. */
  readyPools: Type.Optional(Type.String({ maxLength: 16 })),
  /** One word summarising the conditions, for the printer column (not an API: read the conditions). */
  summary: Type.Optional(Type.String({ maxLength: 32 })),
});
export type RLJobStatus = Static<typeof RLJobStatus>;

export const RLJobSchema = withRules(Type.Object({
  apiVersion: Type.Literal('rlkube.dev/v1alpha1'),
  kind: Type.Literal('RLJob'),
  metadata: Metadata(MAX_JOB_NAME),
  spec: RLJobSpec,
  status: Type.Optional(RLJobStatus),
}), [{
  rule: `self.metadata.name.size() <= ${MAX_JOB_NAME}`,
  message: `metadata.name must be at most ${MAX_JOB_NAME} characters (children are named <job>-<pool>, <job>-learner)`,
  check: (self) => typeof self.metadata?.name !== 'string' || self.metadata.name.length <= MAX_JOB_NAME,
}]);

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }>;
}

export interface RLJob {
  apiVersion: 'rlkube.dev/v1alpha1';
  kind: 'RLJob';
  metadata: ObjectMeta;
  spec: RLJobSpec;
  status?: RLJobStatus;
}
