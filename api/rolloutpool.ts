// RolloutPool (rlkube.dev/v1alpha1): a homogeneous group of inference workers serving one job.
import { Type, type Static } from '@sinclair/typebox';
import { Conditions, JobRef, MAX_JOB_NAME, MAX_POOL_NAME, Metadata, poolFields } from './common.js';
import { mountsNameVolumes } from './pod-overrides.js';
import { withRules } from './schema-kit.js';
import type { ObjectMeta } from './rljob.js';

export const RolloutPoolSpec = withRules(Type.Object({
  /** The job this pool serves (same namespace). A standalone pool names a running job to join it. */
  jobRef: JobRef,
  /** Scales the pool to zero without deleting it (the job's own suspend applies too). */
  suspend: Type.Boolean({ default: false }),
  ...poolFields,
}, { additionalProperties: false }), [mountsNameVolumes, {
  rule: 'self.jobRef == oldSelf.jobRef',
  message: 'jobRef is immutable',
  fieldPath: '.jobRef',
}]);
export type RolloutPoolSpec = Static<typeof RolloutPoolSpec>;

export const RolloutPoolStatus = Type.Object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(Conditions()),
  replicas: Type.Optional(Type.Integer({ minimum: 0 })),
  readyReplicas: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Label selector of the pool's pods (scale subresource, for HPA/KEDA). */
  selector: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type RolloutPoolStatus = Static<typeof RolloutPoolStatus>;

/** Standalone pool names are free; owned ones are `<job>-<pool>`. */
export const MAX_ROLLOUT_POOL_NAME = MAX_JOB_NAME + 1 + MAX_POOL_NAME;

export const RolloutPoolSchema = Type.Object({
  apiVersion: Type.Literal('rlkube.dev/v1alpha1'),
  kind: Type.Literal('RolloutPool'),
  metadata: Metadata(MAX_ROLLOUT_POOL_NAME),
  spec: RolloutPoolSpec,
  status: Type.Optional(RolloutPoolStatus),
});

export interface RolloutPool {
  apiVersion: 'rlkube.dev/v1alpha1';
  kind: 'RolloutPool';
  metadata: ObjectMeta;
  spec: RolloutPoolSpec;
  status?: RolloutPoolStatus;
}
