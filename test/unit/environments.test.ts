// Environments and the learner's verifier: pure functions, table-tested.
import { createEnvironment, EnvironmentError } from '../../images/agent/src/environments/index.js';
import { lastNumber, referenceAnswer } from '../../images/agent/src/environments/gsm8k.js';
import { lastBoxed, normaliseAnswer } from '../../images/agent/src/environments/math.js';
import { positionalMatch } from '../../images/agent/src/environments/reverse.js';
import { groupVerifier } from '../../images/agent/src/verifier.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticGroup } from '../harness/groups.js';

describe('reverse', () => {
  it.each([
    ['cba', 'cba', 1],
    ['cba', 'cbx', 2 / 3],
    ['cba', 'cb', 2 / 3],
    ['cba', 'cbaaa', 3 / 5],
    ['cba', '', 0],
    ['ab', 'ba', 0],
  ])('target %s, completion %s → %d', (target, completion, reward) => {
    expect(positionalMatch(target, completion)).toBeCloseTo(reward);
  });

  it('makes the same item for the same (seed, seq) and short strings over the alphabet', () => {
    const env = createEnvironment({ name: 'reverse', args: { minLength: 2, maxLength: 4, alphabet: 'abcd' } }, 7);
    const again = createEnvironment({ name: 'reverse', args: { minLength: 2, maxLength: 4, alphabet: 'abcd' } }, 7);
    for (let seq = 0; seq < 200; seq++) {
      const item = env.item(seq);
      expect(again.item(seq)).toEqual(item);
      expect(item.prompt).toMatch(/^[abcd]{2,4}=$/);
      expect(item.answer).toBe([...item.prompt.slice(0, -1)].reverse().join(''));
      expect(env.score(item, item.answer)).toBe(1);
    }
  });

  it('refuses bad arguments with the argument named', () => {
    expect(() => createEnvironment({ name: 'reverse', args: { maxLength: 0 } }, 1)).toThrow(/environment.args.maxLength/);
    expect(() => createEnvironment({ name: 'nope' }, 1)).toThrow(EnvironmentError);
  });
});

describe('arithmetic, gsm8k and math', () => {
  it('scores arithmetic exactly', () => {
    const env = createEnvironment({ name: 'arithmetic' }, 3);
    const item = env.item(5);
    expect(env.score(item, item.answer)).toBe(1);
    expect(env.score(item, `${item.answer}1`)).toBe(0);
  });

  it.each([
    ['so 3 + 4 = 7 apples.\n#### 7', '7'],
    ['#### 1,234', '1234'],
    ['#### -5', '-5'],
    ['#### $18.00', '18'],
  ])('gsm8k reference %j → %s', (solution, answer) => expect(referenceAnswer(solution)).toBe(answer));

  it.each([
    ['The answer is 42.', '42'],
    ['first 3, then 1,500 in total', '1500'],
    ['no number here', undefined],
  ])('gsm8k last number of %j → %s', (text, answer) => expect(lastNumber(text)).toBe(answer));

  it.each([
    ['so \\boxed{\\frac{1}{2}}', '\\frac{1}{2}'],
    ['\\boxed{1} then \\boxed{2}', '2'],
    ['\\boxed{x^{2}}', 'x^{2}'],
    ['none', undefined],
  ])('math last boxed of %j → %s', (text, boxed) => expect(lastBoxed(text)).toBe(boxed));

  it.each([
    ['\\dfrac{1}{2}', '\\frac{1}{2}'],
    [' 3.0 ', '3'],
    ['\\left( 1, 2 \\right)', '(1,2)'],
    ['5\\text{ cm}', '5'],
  ])('math normalises %j → %s', (raw, normal) => expect(normaliseAnswer(raw)).toBe(normal));

  it('reads JSONL datasets and names a bad line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rlkube-ds-'));
    const good = join(dir, 'gsm8k.jsonl');
    writeFileSync(good, '{"question":"2+2?","answer":"#### 4"}\n{"question":"3+3?","answer":"#### 6"}\n');
    const env = createEnvironment({ name: 'gsm8k', dataset: good }, 1);
    const item = env.item(0);
    expect(env.score(item, `it is ${item.answer}`)).toBe(1);
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"question":"x","answer":"#### 1"}\nnot json\n');
    expect(() => createEnvironment({ name: 'gsm8k', dataset: bad }, 1)).toThrow(/line 2/);
    expect(() => createEnvironment({ name: 'math' }, 1)).toThrow(/environment.dataset/);
  });
});

describe('the learner verifier', () => {
  const environment = createEnvironment({ name: 'reverse' }, 1);
  const digest = `sha256:${'0'.repeat(64)}`;
  const verify = groupVerifier({ environment, groupSize: 4, rewardTolerance: 1e-6, digestOf: async (v) => (v === 0 ? digest : undefined) });
  const honest = () => {
    const group = syntheticGroup({ job: 'a/b', taskSeq: 3, policyVersion: 0, groupSize: 4 });
    const item = environment.item(3);
    group.verifierId = environment.verifierId;
    group.completions.forEach((c, i) => {
      c.text = i === 0 ? item.answer : 'ab';
      c.reward = environment.score(item, c.text);
    });
    return group;
  };

  it('accepts an honest group', async () => expect(await verify(honest())).toEqual({ ok: true }));

  it.each([
    ['a forged reward', (g: ReturnType<typeof honest>) => (g.completions[1]!.reward = 1), 'RewardMismatch'],
    ['a wrong group size', (g: ReturnType<typeof honest>) => g.completions.pop(), 'GroupSizeMismatch'],
    ['a digest of another model', (g: ReturnType<typeof honest>) => (g.policyDigest = `sha256:${'1'.repeat(64)}`), 'DigestMismatch'],
    ['an unknown policy version', (g: ReturnType<typeof honest>) => (g.policyVersion = 9), 'DigestMismatch'],
  ])('rejects %s', async (_name, tamper, reason) => {
    const group = honest();
    tamper(group);
    expect(await verify(group)).toMatchObject({ ok: false, reason });
  });
});
