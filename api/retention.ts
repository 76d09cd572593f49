// How many policy versions are kept, so that a group made by any version within the staleness bound can still
// be checked against its weights: by the learner bus (weights in the object store, policy records), the learner
// agent (digests) and the trainer (policy files, --keep-policies). If these drifted apart, honest groups would
// be rejected as UnknownVersion or DigestMismatch.
/** The newest `maxStaleness + 1` versions a group may claim, and one more: a version announced mid-generation. */
export const retainedPolicyVersions = (maxStaleness: number): number => maxStaleness + 2;
