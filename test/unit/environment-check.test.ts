// What TypeScript tells of spec.environment before anything runs (no Python: the environment server's own checks
// are tested in python/tests/test_env.py and test/integration/learner-verifier.test.ts).
import { environmentProblem, type EnvironmentSpec } from '../../api/index.js';

describe('environmentProblem', () => {
  it.each<[string, EnvironmentSpec, string | undefined]>([
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
});
