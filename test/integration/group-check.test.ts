// The learner's group check against a real environment server process (python/rlkube_env): honest groups accepted,
// forged ones rejected with their reason (the graders themselves are tested in python/tests/test_env.py).
import { pino } from 'pino';
import { EnvironmentClient, EnvironmentUnusable } from '../../agent/environment-client.js';
import { groupCheck } from '../../agent/group-check.js';
import { startEnvironmentServer, type EnvironmentServer } from '../harness/environment.js';
import { syntheticGroup } from '../harness/groups.js';

describe("the learner's group check, with its own environment server", () => {
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
    group.graderId = 'reverse/v1';
    group.completions.forEach((c, i) => (c.text = i === 0 ? answer : 'ab'));
    const { rewards } = await environment.score(3, group.completions.map((c) => c.text));
    group.completions.forEach((c, i) => (c.reward = rewards[i]!));
    return group;
  };

  it('accepts an honest group and names the grader', async () => {
    const environment = new EnvironmentClient(server.url, log, stop.signal);
    expect(await environment.ready()).toEqual({ status: 'ok', environment: 'reverse', graderId: 'reverse/v1' });
    const verify = groupCheck({ environment, graderId: 'reverse/v1', groupSize: 4, rewardTolerance: 1e-6, digestOf: async (v) => (v === 0 ? digest : undefined) });
    const group = await honest(environment);
    expect(group.completions[0]!.reward).toBe(1);
    expect(await verify(group)).toEqual({ ok: true });
  });

  it.each([
    ['a forged reward', (g: Awaited<ReturnType<typeof honest>>) => (g.completions[1]!.reward = 1), 'RewardMismatch'],
    ['another grader', (g: Awaited<ReturnType<typeof honest>>) => (g.graderId = 'reverse/v0'), 'RewardMismatch'],
    ['a wrong group size', (g: Awaited<ReturnType<typeof honest>>) => g.completions.pop(), 'GroupSizeMismatch'],
    ['a digest of another model', (g: Awaited<ReturnType<typeof honest>>) => (g.policyDigest = `sha256:${'1'.repeat(64)}`), 'DigestMismatch'],
    ['an unknown policy version', (g: Awaited<ReturnType<typeof honest>>) => (g.policyVersion = 9), 'DigestMismatch'],
  ])('rejects %s', async (_name, tamper, reason) => {
    const environment = new EnvironmentClient(server.url, log, stop.signal);
    const verify = groupCheck({ environment, graderId: 'reverse/v1', groupSize: 4, rewardTolerance: 1e-6, digestOf: async (v) => (v === 0 ? digest : undefined) });
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
