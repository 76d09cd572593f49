// The command lines of the Python servers (python/) for a job, in one place: the operator's pod
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

/** `python -m rlkube_engine.server …`: the tiny and hf engines. */
export function engineServerArgs(spec: RLJobSpec, place: ServerPlace & { sampleSeed?: number }): string[] {
  return [
    '-m', 'rlkube_engine.server', '--host', place.host, '--port', String(place.port),
    '--model', modelArg(place.model ?? spec.model.name), '--seed', String(spec.algorithm.seed), ...loraArgs(spec),
    ...(place.sampleSeed !== undefined ? ['--sample-seed', String(place.sampleSeed)] : []),
    ...(place.initWeights ? ['--init-weights', place.initWeights] : []),
  ];
}

/**
 * The trainer's settings an RLJob sets one to one: the trainer's name for each (python/rlkube_trainer/config.py,
 * described in api/generated/trainer-config.json) and where the RLJob holds it (`learner.` paths: the learner's
 * template). Their defaults and bounds agree (test/unit/api-trainer-config.test.ts).
 */
export const TRAINER_SETTINGS = {
  lr: 'algorithm.learningRate',
  temperature: 'algorithm.temperature',
  clip_low: 'algorithm.clipLow',
  clip_high: 'algorithm.clipHigh',
  kl_coef: 'algorithm.klCoef',
  is_cap: 'algorithm.isCap',
  minibatches: 'algorithm.minibatches',
  max_grad_norm: 'algorithm.maxGradNorm',
  adam_beta1: 'algorithm.adamBeta1',
  adam_beta2: 'algorithm.adamBeta2',
  skip_uniform_groups: 'algorithm.skipUniformGroups',
  seed: 'algorithm.seed',
  logprob_tolerance: 'verification.logprobTolerance',
  sampled_positions: 'verification.sampledPositions',
  checkpoint_every: 'learner.checkpoint.everySteps',
  micro_batch: 'learner.microBatch',
  micro_batch_tokens: 'learner.microBatchTokens',
} as const;

/** The trainer's flag for one of its settings (argparse's spelling; a boolean is --name or --no-name). */
export const trainerFlag = (name: string, value?: boolean) => `--${value === false ? 'no-' : ''}${name.replaceAll('_', '-')}`;

/** The value at a dotted path of a spec (with the learner's template under `learner`). */
function valueAt(root: unknown, path: string): unknown {
  return path.split('.').reduce((node, key) => (node as Record<string, unknown> | undefined)?.[key], root);
}

const settingArgs = (spec: RLJobSpec, learner: LearnerTemplate) =>
  Object.entries(TRAINER_SETTINGS).flatMap(([name, path]) => {
    const value = valueAt({ ...spec, learner }, path);
    return typeof value === 'boolean' ? [trainerFlag(name, value)] : [trainerFlag(name), String(value)];
  });

/** `python -m rlkube_trainer.server …`: the GRPO trainer of a learner. */
export function trainerServerArgs(spec: RLJobSpec, learner: LearnerTemplate, place: ServerPlace & { checkpointDir: string }): string[] {
  return [
    '-m', 'rlkube_trainer.server', '--host', place.host, '--port', String(place.port),
    '--model', modelArg(place.model ?? spec.model.name), '--checkpoint-dir', place.checkpointDir,
    ...settingArgs(spec, learner),
    '--nproc-per-node', String(Math.max(1, learner.gpusPerNode)),
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
