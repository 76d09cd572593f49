// What TypeScript tells of spec.environment before anything runs, from the committed environment catalogue (no
// Python: that the catalogue is what Python prints, and that both sides say the same words, is
// test/integration/environment-catalogue.test.ts; the environment server's own checks are python/tests/test_env.py).
import { readdirSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { ENVIRONMENT_CATALOGUE, ENVIRONMENT_NAMES, environmentProblem, type EnvironmentSpec } from '../../api/index.js';
import { EXAMPLES_DIR, readExample } from '../harness/examples.js';

type Case = [string, EnvironmentSpec, string | undefined];
/** A value the CRD's schema lets through (preserve-unknown-fields) but the TS type does not name. */
const odd = (value: unknown): string => value as string;

describe('environmentProblem', () => {
  it.each<Case>([
    ['the reverse example', { name: 'reverse', args: { minLength: 2, maxLength: 4, alphabet: 'abcd' } }, undefined],
    ['reverse minLength above maxLength', { name: 'reverse', args: { minLength: 5, maxLength: 3 } }, 'environment.args.minLength'],
    ['an empty alphabet', { name: 'reverse', args: { alphabet: '' } }, 'environment.args.alphabet'],
    ['a non-integer length', { name: 'reverse', args: { maxLength: '3.5' } }, 'environment.args.maxLength'],
    ['arithmetic out of range', { name: 'arithmetic', args: { maxOperand: 0 } }, 'environment.args.maxOperand'],
    ['gsm8k without a dataset', { name: 'gsm8k' }, 'environment.dataset'],
    ['gsm8k over https', { name: 'gsm8k', dataset: 'https://example.org/train.parquet' }, undefined],
    ['a hub dataset', { name: 'math', dataset: 'hf:openai/gsm8k:main:train' }, undefined],
    ['a malformed hub id', { name: 'math', dataset: 'hf:gsm8k' }, 'environment.dataset'],
    ['an unread scheme', { name: 'math', dataset: 's3://bucket/x.parquet' }, 'environment.dataset'],
    ['a dataset for reverse', { name: 'reverse', dataset: 'x.jsonl' }, 'environment.dataset'],
    ['reasoning-gym without a task', { name: 'reasoning-gym' }, 'environment.args.task'],
    ['verifiers without a module', { name: 'verifiers', args: {} }, 'environment.args.module'],
    ['a custom image judges itself', { name: 'chess', image: 'me/chess:1', args: { minLength: 9 } }, undefined],
  ])('%s', (_name, spec, field) => {
    const problem = environmentProblem(spec);
    expect(problem?.field).toBe(field);
    if (problem) expect(problem.message.startsWith(`${field}: `)).toBe(true);
  });

  // The reason and the whole message: the words rlkube_env says for the same spec (the integration test compares them).
  it.each<[string, EnvironmentSpec, string, string]>([
    ['an unknown environment', { name: 'chess' }, 'UnknownEnvironment',
      'environment.name: "chess" is not one of reverse, arithmetic, gsm8k, math, reasoning-gym, verifiers'],
    // reverse
    ['reverse: an unknown arg (a typo of minLength)', { name: 'reverse', args: { minLen: 2 } }, 'InvalidEnvironmentArgs',
      'environment.args.minLen: is not an argument of reverse (it takes minLength, maxLength, alphabet)'],
    ['reverse: a string where an integer goes', { name: 'reverse', args: { minLength: 'two' } }, 'InvalidEnvironmentArgs',
      'environment.args.minLength: must be an integer in [1, 16], got "two"'],
    ['reverse: a boolean where an integer goes', { name: 'reverse', args: { minLength: odd(true) } }, 'InvalidEnvironmentArgs',
      'environment.args.minLength: must be an integer in [1, 16], got true'],
    ['reverse: above the bound', { name: 'reverse', args: { maxLength: 17 } }, 'InvalidEnvironmentArgs',
      'environment.args.maxLength: must be an integer in [1, 16], got 17'],
    ['reverse: a fraction', { name: 'reverse', args: { maxLength: 3.5 } }, 'InvalidEnvironmentArgs',
      'environment.args.maxLength: must be an integer in [1, 16], got 3.5'],
    ['reverse: minLength above the default maxLength', { name: 'reverse', args: { minLength: 5 } }, 'InvalidEnvironmentArgs',
      'environment.args.minLength: 5 is above environment.args.maxLength 4'],
    ['reverse: an alphabet with capitals', { name: 'reverse', args: { alphabet: 'ABC' } }, 'InvalidEnvironmentArgs',
      'environment.args.alphabet: must be 2-26 lowercase letters, got "ABC"'],
    ['reverse: a number as alphabet', { name: 'reverse', args: { alphabet: 12 } }, 'InvalidEnvironmentArgs',
      'environment.args.alphabet: must be 2-26 lowercase letters, got 12'],
    ['reverse: a dataset before a bad arg', { name: 'reverse', args: { minLen: 2 }, dataset: 'x.jsonl' }, 'InvalidEnvironmentArgs',
      'environment.dataset: environment reverse takes no dataset'],
    // arithmetic
    ['arithmetic: an unknown arg', { name: 'arithmetic', args: { minOperand: 1 } }, 'InvalidEnvironmentArgs',
      'environment.args.minOperand: is not an argument of arithmetic (it takes maxOperand)'],
    ['arithmetic: above the bound', { name: 'arithmetic', args: { maxOperand: 1_000_001 } }, 'InvalidEnvironmentArgs',
      'environment.args.maxOperand: must be an integer in [1, 1000000], got 1000001'],
    ['arithmetic: an exponent string', { name: 'arithmetic', args: { maxOperand: '1e2' } }, 'InvalidEnvironmentArgs',
      'environment.args.maxOperand: must be an integer in [1, 1000000], got "1e2"'],
    // gsm8k and math
    ['gsm8k: any arg', { name: 'gsm8k', args: { split: 'train' }, dataset: 'd.jsonl' }, 'InvalidEnvironmentArgs',
      'environment.args.split: is not an argument of gsm8k (it takes none)'],
    ['math: a bad arg before its missing dataset', { name: 'math', args: { level: 5 } }, 'InvalidEnvironmentArgs',
      'environment.args.level: is not an argument of math (it takes none)'],
    ['math: no dataset', { name: 'math' }, 'InvalidEnvironmentArgs',
      'environment.dataset: environment math needs a dataset (JSONL or Parquet: a path, an http(s) URL or hf:<owner>/<name>)'],
    ['gsm8k: an unread scheme', { name: 'gsm8k', dataset: 'ftp://host/x.jsonl' }, 'DatasetUnreadable',
      'environment.dataset: ftp://host/x.jsonl: only local paths, http(s) URLs and hf:<owner>/<name> are read'],
    // reasoning-gym: task required, size bounded, the rest is the task's own config
    ['reasoning-gym: no task', { name: 'reasoning-gym', args: { min_terms: 3 } }, 'InvalidEnvironmentArgs',
      'environment.args.task: is required: a reasoning-gym task name (e.g. leg_counting)'],
    ['reasoning-gym: a number as task', { name: 'reasoning-gym', args: { task: 7 } }, 'InvalidEnvironmentArgs',
      'environment.args.task: must be a reasoning-gym task name (e.g. leg_counting), got 7'],
    ['reasoning-gym: size 0', { name: 'reasoning-gym', args: { task: 'leg_counting', size: 0 } }, 'InvalidEnvironmentArgs',
      'environment.args.size: must be an integer in [1, 2147483647], got 0'],
    ['reasoning-gym: a dataset', { name: 'reasoning-gym', args: { task: 'leg_counting' }, dataset: 'x.jsonl' }, 'InvalidEnvironmentArgs',
      'environment.dataset: environment reasoning-gym takes no dataset'],
    // verifiers: module required, the rest is load_environment()'s
    ['verifiers: no module', { name: 'verifiers', args: { message_type: 'chat' } }, 'InvalidEnvironmentArgs',
      'environment.args.module: is required: a Python module name (e.g. vf_reverse_env)'],
    ['verifiers: not a module name', { name: 'verifiers', args: { module: 'rm -rf /' } }, 'InvalidEnvironmentArgs',
      'environment.args.module: must be a Python module name (e.g. vf_reverse_env), got "rm -rf /"'],
  ])('%s', (_name, spec, reason, message) => {
    expect(environmentProblem(spec)).toEqual({ reason, field: message.slice(0, message.indexOf(':')), message });
  });

  it.each<Case>([
    ['reverse: integers as strings of digits', { name: 'reverse', args: { minLength: '3', maxLength: '16' } }, undefined],
    ['reverse: equal lengths', { name: 'reverse', args: { minLength: 16, maxLength: 16, alphabet: 'ab' } }, undefined],
    ['arithmetic: the largest operand', { name: 'arithmetic', args: { maxOperand: 1_000_000 } }, undefined],
    ['arithmetic: no args', { name: 'arithmetic' }, undefined],
    ['reasoning-gym: a task and its config', { name: 'reasoning-gym', args: { task: 'number_sequence', min_terms: 4, max_terms: 5 } }, undefined],
    ['verifiers: a module and its kwargs', { name: 'verifiers', args: { module: 'vf_reverse_env', message_type: 'chat' } }, undefined],
  ])('accepts %s', (_name, spec) => {
    expect(environmentProblem(spec)).toBeUndefined();
  });

  // Every integer arg of every built-in, at and past its bounds (the catalogue's numbers, not copies of them).
  const integerArgs = ENVIRONMENT_CATALOGUE.flatMap((environment) => Object.entries(environment.args.properties)
    .flatMap(([name, arg]) => arg.type === 'integer' ? [{ environment, name, arg }] : []));
  it.each(integerArgs.map((c) => [`${c.environment.name}.${c.name}`, c] as const))('%s is bounded', (_label, { environment, name, arg }) => {
    const { properties } = environment.args;
    // The other integer args as near the value as their bounds allow, so no cross-arg rule speaks first.
    const spec = (value: number): EnvironmentSpec => ({
      name: environment.name,
      args: Object.fromEntries([
        ...Object.entries(properties).map(([n, a]) => [n, a.type !== 'integer' ? a.default ?? 'x' : n === name ? value : Math.min(a.maximum, Math.max(a.minimum, value))]),
      ]),
      ...(environment.dataset === 'required' ? { dataset: 'd.jsonl' } : {}),
    });
    expect(environmentProblem(spec(arg.minimum))).toBeUndefined();
    expect(environmentProblem(spec(arg.maximum))).toBeUndefined();
    for (const outside of [arg.minimum - 1, arg.maximum + 1]) {
      expect(environmentProblem(spec(outside))).toEqual({
        reason: 'InvalidEnvironmentArgs', field: `environment.args.${name}`,
        message: `environment.args.${name}: must be an integer in [${arg.minimum}, ${arg.maximum}], got ${outside}`,
      });
    }
  });

  it('every built-in is in the catalogue, and the RLJob names come from it', () => {
    expect(ENVIRONMENT_NAMES).toEqual(['reverse', 'arithmetic', 'gsm8k', 'math', 'reasoning-gym', 'verifiers']);
    expect(integerArgs.map((c) => `${c.environment.name}.${c.name}`)).toEqual(['reverse.minLength', 'reverse.maxLength', 'arithmetic.maxOperand', 'reasoning-gym.size']);
  });

  const exampleEnvironments = readdirSync(EXAMPLES_DIR).filter((file) => file.endsWith('.yaml')).flatMap((file) =>
    parseAllDocuments(readExample(file)).map((doc) => doc.toJS())
      .filter((manifest) => manifest?.kind === 'RLJob').map((job) => [file, job.spec.environment as EnvironmentSpec] as const));
  it.each(exampleEnvironments)('the environment of examples/%s passes', (_file, environment) => {
    expect(environmentProblem(environment)).toBeUndefined();
  });
  it('the examples have RLJobs to check', () => {
    expect(exampleEnvironments.length).toBeGreaterThanOrEqual(3);
  });
});
