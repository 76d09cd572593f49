// One interface for every environment: a deterministic task item per sequence number, and a verifier.
export interface EnvironmentItem {
  prompt: string;
  /** What the verifier compares against; never sent to rollout workers' engines, only to their verifiers. */
  answer: string;
}

export interface Environment {
  readonly name: string;
  /** Names the verifier (and its version) in every trajectory group. */
  readonly verifierId: string;
  /** The item of task `seq`: a pure function of the job's seed and seq, so every process agrees on it. */
  item(seq: number): EnvironmentItem;
  /** Reward in [0, 1] of one completion. */
  score(item: EnvironmentItem, completion: string): number;
}

export type EnvironmentArgs = Record<string, string | number>;

export class EnvironmentError extends Error {
  constructor(
    readonly reason: 'UnknownEnvironment' | 'InvalidEnvironmentArgs' | 'DatasetUnreadable',
    message: string,
  ) {
    super(message);
    this.name = 'EnvironmentError';
  }
}

/** A small, fast, seedable PRNG (mulberry32) so items are reproducible from (seed, seq). */
export function rng(seed: number, seq: number): () => number {
  let state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(seq + 1, 0xc2b2ae35)) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function intArg(args: EnvironmentArgs, name: string, fallback: number, min: number, max: number): number {
  const value = args[name] ?? fallback;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new EnvironmentError('InvalidEnvironmentArgs', `environment.args.${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return n;
}
