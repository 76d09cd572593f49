// What TypeScript tells of spec.environment before anything runs, from the committed environment catalogue (no
// Python: that the catalogue is what Python prints, and that both sides say the same words, is
// test/integration/environment-catalogue.test.ts; the environment server's own checks are python/tests/test_env.py).
import { readdirSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { ENVIRONMENT_CATALOGUE, ENVIRONMENT_NAMES, environmentProblem, type EnvironmentSpec } from '../../api/index.js';
import { ACCEPTED, REFUSALS } from '../fixtures/environment-specs.js';
import { EXAMPLES_DIR, readExample } from '../harness/examples.js';

type Case = [string, EnvironmentSpec, string | undefined];

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

  // The reason and the whole message: the words rlkube_env says for the same spec (the integration test hears them).
  it.each(REFUSALS)('%s', (_name, spec, reason, message) => {
    expect(environmentProblem(spec)).toEqual({ reason, field: message.slice(0, message.indexOf(':')), message });
  });

  it.each<[string, EnvironmentSpec]>([
    ...ACCEPTED,
    ['verifiers: a module and its kwargs', { name: 'verifiers', args: { module: 'vf_reverse_env', message_type: 'chat' } }],
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
