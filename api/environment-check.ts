// What can be told of spec.environment without running it: the operator refuses these before it makes pods,
// `rlkube run` before it starts anything. The environment server (images/trainer/rlkube_env) is the authority
// on the rest (a dataset's rows, a reasoning-gym task's config); its checks say the same words.
import type { EnvironmentSpec } from './rljob.js';

export interface EnvironmentProblem {
  reason: 'InvalidEnvironmentArgs' | 'DatasetUnreadable';
  /** The manifest field at fault, e.g. environment.args.minLength. */
  field: string;
  message: string;
}

const problem = (reason: EnvironmentProblem['reason'], field: string, detail: string): EnvironmentProblem =>
  ({ reason, field, message: `${field}: ${detail}` });

function intArg(args: Record<string, string | number>, name: string, fallback: number, min: number, max: number): number | EnvironmentProblem {
  const value = args[name] ?? fallback;
  const n = typeof value === 'number' ? value : value.trim() === '' ? NaN : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    return problem('InvalidEnvironmentArgs', `environment.args.${name}`, `must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return n;
}

const DATASET_ENVIRONMENTS = ['gsm8k', 'math'];
const HF_DATASET = /^hf:[^/:\s]+\/[^/:\s]+(:[^:\s]+){0,2}$/;

/** The first problem found, or undefined. A custom image (environment.image) is its own judge. */
export function environmentProblem(env: EnvironmentSpec): EnvironmentProblem | undefined {
  if (env.image) return undefined;
  const args = env.args ?? {};
  if (env.name === 'reverse') {
    const min = intArg(args, 'minLength', 2, 1, 16);
    if (typeof min !== 'number') return min;
    const max = intArg(args, 'maxLength', 4, 1, 16);
    if (typeof max !== 'number') return max;
    if (min > max) return problem('InvalidEnvironmentArgs', 'environment.args.minLength', `${min} is above environment.args.maxLength ${max}`);
    const alphabet = String(args.alphabet ?? 'abcd');
    if (!/^[a-z]{2,26}$/.test(alphabet)) return problem('InvalidEnvironmentArgs', 'environment.args.alphabet', `must be 2-26 lowercase letters, got ${JSON.stringify(alphabet)}`);
  }
  if (env.name === 'arithmetic') {
    const max = intArg(args, 'maxOperand', 9, 1, 1_000_000);
    if (typeof max !== 'number') return max;
  }
  if (env.name === 'reasoning-gym' && typeof args.task !== 'string') {
    return problem('InvalidEnvironmentArgs', 'environment.args.task', 'names the reasoning-gym task (e.g. leg_counting)');
  }
  if (env.name === 'verifiers' && typeof args.module !== 'string') {
    return problem('InvalidEnvironmentArgs', 'environment.args.module', 'names the Python module with load_environment()');
  }
  if (DATASET_ENVIRONMENTS.includes(env.name)) {
    const dataset = env.dataset;
    if (!dataset) return problem('InvalidEnvironmentArgs', 'environment.dataset', `environment ${env.name} needs a dataset (JSONL or Parquet: a path, an http(s) URL or hf:<owner>/<name>)`);
    if (dataset.startsWith('hf:') && !HF_DATASET.test(dataset)) return problem('DatasetUnreadable', 'environment.dataset', `${dataset}: a hub dataset is hf:<owner>/<name>[:<config>[:<split>]]`);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dataset) && !/^https?:\/\//.test(dataset)) return problem('DatasetUnreadable', 'environment.dataset', `${dataset}: only paths, http(s) URLs and hf:<owner>/<name> are read`);
  } else if (env.dataset !== undefined) {
    return problem('InvalidEnvironmentArgs', 'environment.dataset', `environment ${env.name} takes no dataset`);
  }
  return undefined;
}
