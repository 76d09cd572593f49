// rlkube's API: the RLJob / RolloutPool / Learner schemas and types, validation, and the agent environment contract.
export * from './common.js';
export * from './pod-overrides.js';
export * from './rljob.js';
export * from './environment-check.js';
export * from './rolloutpool.js';
export * from './learner.js';
export { validate, withDefaults, formatErrors, fieldPath, type FieldError } from './validate.js';
export { parseRLJobManifest, parseRLJobSpec, InvalidManifestError } from './manifest.js';
export * from './agent-env.js';
export * from './python-args.js';
export * from './bus-limits.js';
export * from './retention.js';
