// Learner (rlkube.dev/v1alpha1): the training side of one job (nodes x GPUs, trainer, checkpoints).
import { Type, type Static } from '@sinclair/typebox';
import { Conditions, JobRef, MAX_JOB_NAME, Metadata, learnerFields, multiNodeNeedsGpus } from './common.js';
import { mountsNameVolumes } from './pod-overrides.js';
import { withRules } from './schema-kit.js';
import type { ObjectMeta } from './rljob.js';

export const LearnerSpec = withRules(Type.Object({
  jobRef: JobRef,
  suspend: Type.Boolean({ default: false }),
  ...learnerFields,
}, { additionalProperties: false }), [
  multiNodeNeedsGpus,
  mountsNameVolumes,
  { rule: 'self.jobRef == oldSelf.jobRef', message: 'jobRef is immutable', fieldPath: '.jobRef' },
]);
export type LearnerSpec = Static<typeof LearnerSpec>;

export const LearnerStatus = Type.Object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(Conditions()),
  replicas: Type.Optional(Type.Integer({ minimum: 0 })),
  readyReplicas: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type LearnerStatus = Static<typeof LearnerStatus>;

/** `<job>-learner`; a StatefulSet name must leave room for its pods' revision-hash label. */
export const MAX_LEARNER_NAME = MAX_JOB_NAME + '-learner'.length;

export const LearnerSchema = Type.Object({
  apiVersion: Type.Literal('rlkube.dev/v1alpha1'),
  kind: Type.Literal('Learner'),
  metadata: Metadata(MAX_LEARNER_NAME),
  spec: LearnerSpec,
  status: Type.Optional(LearnerStatus),
});

export interface Learner {
  apiVersion: 'rlkube.dev/v1alpha1';
  kind: 'Learner';
  metadata: ObjectMeta;
  spec: LearnerSpec;
  status?: LearnerStatus;
}
