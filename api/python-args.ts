// The command lines of the Python servers (images/trainer) for a job, in one place: the operator's pod
// builders and `rlkube run` both start them, and must start them alike.
import type { LearnerTemplate } from './common.js';
import { retainedPolicyVersions } from './retention.js';
import { TINY_MODEL, type EnvironmentSpec, type RLJobSpec } from './rljob.js';

/** Model argument of the Python servers: the built-in model, or a Hugging Face hub id / model folder. */
export const modelArg = (name: string) => (name === TINY_MODEL ? TINY_MODEL : `hf:${name}`);

interface ServerPlace {
  host: string;
  port: number;
  /** The model to load instead of spec.model.name (a local run resolves a relative folder). */
  model?: string;
  /** A warm-start policy file, version 0 on both sides. */
  initWeights?: string;
}

const loraArgs = (spec: RLJobSpec) =>
  spec.model.lora ? ['--lora-rank', String(spec.model.lora.rank), '--lora-alpha', String(Math.round(spec.model.lora.alpha))] : [];

/** `python -m rlkube_trainer.policy_server …`: the tiny and hf engines. */
export function engineServerArgs(spec: RLJobSpec, place: ServerPlace & { sampleSeed?: number }): string[] {
  return [
    '-m', 'rlkube_trainer.policy_server', '--host', place.host, '--port', String(place.port),
    '--model', modelArg(place.model ?? spec.model.name), '--seed', String(spec.algorithm.seed), ...loraArgs(spec),
    ...(place.sampleSeed !== undefined ? ['--sample-seed', String(place.sampleSeed)] : []),
    ...(place.initWeights ? ['--init-weights', place.initWeights] : []),
  ];
}

/** `python -m rlkube_trainer.trainer_server …`: the GRPO trainer of a learner. */
export function trainerServerArgs(spec: RLJobSpec, learner: LearnerTemplate, place: ServerPlace & { checkpointDir: string }): string[] {
  const { algorithm, verification } = spec;
  return [
    '-m', 'rlkube_trainer.trainer_server', '--host', place.host, '--port', String(place.port),
    '--model', modelArg(place.model ?? spec.model.name), '--checkpoint-dir', place.checkpointDir,
    '--lr', String(algorithm.learningRate), '--temperature', String(algorithm.temperature),
    '--clip-low', String(algorithm.clipLow), '--clip-high', String(algorithm.clipHigh), '--kl-coef', String(algorithm.klCoef),
    '--is-cap', String(algorithm.isCap), '--seed', String(algorithm.seed),
    '--logprob-tolerance', String(verification.logprobTolerance), '--sampled-positions', String(verification.sampledPositions),
    '--checkpoint-every', String(learner.checkpoint.everySteps), '--nproc-per-node', String(Math.max(1, learner.gpusPerNode)),
    // every group is checked against the weights of the version it claims: those of the staleness bound stay on disk
    '--keep-policies', String(retainedPolicyVersions(spec.sync.maxStaleness)),
    ...loraArgs(spec),
    ...(place.initWeights ? ['--init-weights', place.initWeights] : []),
  ];
}

/** `python -m rlkube_env.server …`: the environment server beside each agent (docs/contracts.md). */
export function environmentServerArgs(spec: RLJobSpec, place: { host: string; port: number; cacheDir: string }): string[] {
  return [
    '-m', 'rlkube_env.server', '--host', place.host, '--port', String(place.port),
    '--spec', JSON.stringify(environmentOf(spec.environment)), '--seed', String(spec.algorithm.seed), '--cache-dir', place.cacheDir,
  ];
}

/** `python -m rlkube_env.cli check …`: makes the environment once (datasets fetched, args checked) and says why not. */
export function environmentCheckArgs(spec: RLJobSpec, cacheDir: string): string[] {
  return ['-m', 'rlkube_env.cli', 'check', '--spec', JSON.stringify(environmentOf(spec.environment)), '--seed', String(spec.algorithm.seed), '--cache-dir', cacheDir];
}

/** What the environment server is told: what it builds (where its image and token come from is the pod's business). */
const environmentOf = ({ name, args, dataset }: EnvironmentSpec) => ({ name, ...(args ? { args } : {}), ...(dataset ? { dataset } : {}) });
