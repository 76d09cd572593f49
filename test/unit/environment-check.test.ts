// What TypeScript tells of spec.environment before anything runs, and the learner's verifier against a real
// environment server (the graders themselves are tested in images/trainer/tests/test_env.py).
import { pino } from 'pino';
import { environmentProblem, type EnvironmentSpec } from '../../api/index.js';
import { EnvironmentClient, EnvironmentUnusable } from '../../agent/environment-client.js';
import { groupVerifier } from '../../agent/verifier.js';
import { startEnvironmentServer, type EnvironmentServer } from '../harness/environment.js';
import { syntheticGroup } from '../harness/groups.js';

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

describe('the learner verifier, with its own environment server', () => {
  let server: EnvironmentServer;
  let unusable: EnvironmentServer;
  const stop = new AbortController();
  const log = pino({ level: 'silent' });
  beforeAll(async () => {
    [server, unusable] = await Promise.all([
      startEnvironmentServer({ name: 'reverse' }, 1),
      startEnvironmentServer({ name: 'reverse', args: { alphabet: '' } }, 1),
    ]);
  });
  afterAll(async () => {
    stop.abort();
    await Promise.all([server.stop(), unusable.stop()]);
  });

  const digest = `sha256:${'0'.repeat(64)}`;
  const honest = async (environment: EnvironmentClient) => {
    const group = syntheticGroup({ job: 'a/b', taskSeq: 3, policyVersion: 0, groupSize: 4 });
    const { prompt } = await environment.task(3);
    const answer = [...prompt.slice(0, -1)].reverse().join('');
    group.verifierId = 'reverse/v1';
    group.completions.forEach((c, i) => (c.text = i === 0 ? answer : 'ab'));
    const { rewards } = await environment.score(3, group.completions.map((c) => c.text));
    group.completions.forEach((c, i) => (c.reward = rewards[i]!));
    return group;
  };

  it('accepts an honest group and names the grader', async () => {
    const environment = new EnvironmentClient(server.url, log, stop.signal);
    expect(await environment.ready()).toEqual({ status: 'ok', environment: 'reverse', verifierId: 'reverse/v1' });
    const verify = groupVerifier({ environment, verifierId: 'reverse/v1', groupSize: 4, rewardTolerance: 1e-6, digestOf: async (v) => (v === 0 ? digest : undefined) });
    const group = await honest(environment);
    expect(group.completions[0]!.reward).toBe(1);
    expect(await verify(group)).toEqual({ ok: true });
  });

  it.each([
    ['a forged reward', (g: Awaited<ReturnType<typeof honest>>) => (g.completions[1]!.reward = 1), 'RewardMismatch'],
    ['another grader', (g: Awaited<ReturnType<typeof honest>>) => (g.verifierId = 'reverse/v0'), 'RewardMismatch'],
    ['a wrong group size', (g: Awaited<ReturnType<typeof honest>>) => g.completions.pop(), 'GroupSizeMismatch'],
    ['a digest of another model', (g: Awaited<ReturnType<typeof honest>>) => (g.policyDigest = `sha256:${'1'.repeat(64)}`), 'DigestMismatch'],
    ['an unknown policy version', (g: Awaited<ReturnType<typeof honest>>) => (g.policyVersion = 9), 'DigestMismatch'],
  ])('rejects %s', async (_name, tamper, reason) => {
    const environment = new EnvironmentClient(server.url, log, stop.signal);
    const verify = groupVerifier({ environment, verifierId: 'reverse/v1', groupSize: 4, rewardTolerance: 1e-6, digestOf: async (v) => (v === 0 ? digest : undefined) });
    const group = await honest(environment);
    tamper(group);
    expect(await verify(group)).toMatchObject({ ok: false, reason });
  });

  it('reports an unusable environment with its reason and field, not as a server to wait for', async () => {
    const environment = new EnvironmentClient(unusable.url, log, stop.signal);
    const refusal = await environment.ready().catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(EnvironmentUnusable);
    expect(refusal).toMatchObject({ reason: 'InvalidEnvironmentArgs' });
    expect((refusal as Error).message).toMatch(/^environment\.args\.alphabet: /);
  });
});
