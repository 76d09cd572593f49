// RLJob manifests as the tests write and mutate them, before defaults and validation (the invalid cases put wrong
// values in on purpose, so every value is open).

/** Fields of a manifest, every value open: the invalid cases put wrong ones there on purpose. */
export type Fields = Record<string, unknown>;
/** A pool of a job manifest (its engine is what the cases change most). */
export interface PoolManifest extends Fields { engine: Fields }
/** An RLJob manifest as a user writes it, before defaults and validation, open to the invalid cases' edits. */
export interface JobManifest extends Fields {
  apiVersion: string;
  kind: string;
  metadata: Fields & { name: string };
  spec: Fields & { model: Fields; environment: Fields; algorithm: Fields; sync: Fields; learner: Fields; rollout: Fields & { pools: PoolManifest[] } };
}
/** The job's first (in baseJob: only) pool. */
export const firstPool = (m: JobManifest): PoolManifest => {
  const pool = m.spec.rollout.pools[0];
  if (!pool) throw new Error(`${m.metadata.name}: no pool`);
  return pool;
};
