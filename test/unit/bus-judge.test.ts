// The learner's group check without NATS: one message in, one verdict out, for every reason a group is turned
// away, in order of the checks (table-driven), and the used-task and copy memory it keeps.
import { CopyDetector } from '../../bus/copies.js';
import { GroupJudge, UsedTasks, type GroupCheck, type Judgement, type SignatureChecker } from '../../bus/judge.js';
import type { TaskState } from '../../bus/sync-policy.js';
import { encodeGroup, type TrajectoryGroup } from '../../bus/trajectory.js';
import { syntheticGroup } from '../harness/groups.js';

const JOB = 'test/judge';
const SIGNED = 'signature-of-its-worker';
const tasks: TaskState = { issuedSeq: 20, stepIndex: 5, stepFirstSeq: 17, stepLastSeq: 20 };
const at = { version: 4, oldestUsable: 3 };
const accept: GroupCheck = () => ({ ok: true });

function judgeOf(options: { keys?: SignatureChecker; used?: UsedTasks; copies?: CopyDetector } = {}) {
  const used = options.used ?? new UsedTasks(1024);
  const judge = new GroupJudge({
    keys: options.keys ?? { check: (_worker, _digest, signature) => signature === SIGNED },
    copies: options.copies ?? new CopyDetector(),
    used,
    tasks: () => tasks,
    decodeLimits: { job: JOB, vocabSize: 64, maxBytes: 1 << 20 },
    usesUpStepTask: (taskSeq, t) => taskSeq >= t.stepFirstSeq,
  });
  return { judge, used };
}

const group = (overrides: Partial<Parameters<typeof syntheticGroup>[0]> = {}) =>
  syntheticGroup({ job: JOB, taskSeq: 18, policyVersion: 4, workerId: 'w1', ...overrides });

/** The verdict without the decoded group (compared by the fields that matter). */
async function verdict(judged: Judgement | Promise<Judgement>) {
  const j = await judged;
  return j.outcome === 'rejected'
    ? { outcome: j.outcome, reason: j.reason, worker: j.group?.workerId, taskUsedUp: j.taskUsedUp }
    : { outcome: j.outcome, worker: j.group.workerId, ...(j.outcome === 'stale' ? { taskUsedUp: j.taskUsedUp } : {}) };
}

describe('GroupJudge', () => {
  const cases: Array<[string, Uint8Array, string | undefined, GroupCheck, object]> = [
    ['an honest group of the current version is accepted', encodeGroup(group()), SIGNED, accept, { outcome: 'accepted', worker: 'w1' }],
    ['one version old, within maxStaleness: accepted', encodeGroup(group({ policyVersion: 3 })), SIGNED, accept, { outcome: 'accepted', worker: 'w1' }],
    ['older than maxStaleness, for this step\'s task: stale, the task used up', encodeGroup(group({ policyVersion: 2 })), SIGNED, accept, { outcome: 'stale', worker: 'w1', taskUsedUp: true }],
    ['older than maxStaleness, for an earlier task: stale', encodeGroup(group({ policyVersion: 2, taskSeq: 3 })), SIGNED, accept, { outcome: 'stale', worker: 'w1', taskUsedUp: false }],
    ['noise: Malformed, counted against no one', Uint8Array.from({ length: 64 }, (_, i) => i), SIGNED, accept, { outcome: 'rejected', reason: 'Malformed', worker: undefined, taskUsedUp: false }],
    ['another job\'s group: WrongJob', encodeGroup({ ...group(), job: 'other/job' }), SIGNED, accept, { outcome: 'rejected', reason: 'WrongJob', worker: undefined, taskUsedUp: false }],
    ['a token past the vocabulary: TokenOutOfRange', encodeGroup({ ...group(), promptTokenIds: Int32Array.of(1, 64) }), SIGNED, accept, { outcome: 'rejected', reason: 'TokenOutOfRange', worker: undefined, taskUsedUp: false }],
    ['unsigned: BadSignature, not counted against the worker it names', encodeGroup(group()), undefined, accept, { outcome: 'rejected', reason: 'BadSignature', worker: undefined, taskUsedUp: true }],
    ['a task never issued: UnknownTask', encodeGroup(group({ taskSeq: 21 })), SIGNED, accept, { outcome: 'rejected', reason: 'UnknownTask', worker: 'w1', taskUsedUp: false }],
    ['a version not published yet: FutureVersion', encodeGroup(group({ policyVersion: 5 })), SIGNED, accept, { outcome: 'rejected', reason: 'FutureVersion', worker: 'w1', taskUsedUp: false }],
    ['the caller\'s group check refuses: its reason, the task used up', encodeGroup(group()), SIGNED, () => ({ ok: false, reason: 'RewardMismatch', message: 'forged' }), { outcome: 'rejected', reason: 'RewardMismatch', worker: 'w1', taskUsedUp: true }],
    ['an asynchronous group check is awaited', encodeGroup(group()), SIGNED, async () => ({ ok: false, reason: 'DigestMismatch', message: 'x' }), { outcome: 'rejected', reason: 'DigestMismatch', worker: 'w1', taskUsedUp: true }],
  ];
  it.each(cases)('%s', async (_, data, signature, verify, expected) => {
    expect(await verdict(judgeOf().judge.judge(data, signature, at, verify))).toEqual(expected);
  });

  it('a key looked up asynchronously decides as a known one does', async () => {
    const { judge } = judgeOf({ keys: { check: async (_w, _d, signature) => signature === SIGNED } });
    const judged = judge.judge(encodeGroup(group()), SIGNED, at, accept);
    expect(judged).toBeInstanceOf(Promise);
    expect(await verdict(judged)).toEqual({ outcome: 'accepted', worker: 'w1' });
  });

  it('a second group for a used task is a Duplicate (the first one used it, whatever its verdict)', async () => {
    const { judge, used } = judgeOf();
    expect(await verdict(judge.judge(encodeGroup(group({ policyVersion: 2 })), SIGNED, at, accept))).toMatchObject({ outcome: 'stale' });
    expect(used.has(18)).toBe(true);
    expect(await verdict(judge.judge(encodeGroup(group({ workerId: 'w2' })), SIGNED, at, accept))).toEqual({ outcome: 'rejected', reason: 'Duplicate', worker: 'w2', taskUsedUp: false });
  });

  it('an unlikely group seen before from another worker is Copied; the original stays accepted', async () => {
    const { judge } = judgeOf();
    const original = group({ taskSeq: 17, tokensPerCompletion: 64 });
    const copy: TrajectoryGroup = { ...original, workerId: 'copier', taskSeq: 19, taskId: 't19' };
    expect(await verdict(judge.judge(encodeGroup(original), SIGNED, at, accept))).toEqual({ outcome: 'accepted', worker: 'w1' });
    const judged = await judge.judge(encodeGroup(copy), SIGNED, at, accept);
    expect(judged).toMatchObject({ outcome: 'rejected', reason: 'Copied', copiedFrom: 'w1', taskUsedUp: true });
  });

  it('a rejection before the used check leaves the task open for an honest group', async () => {
    const { judge, used } = judgeOf();
    await judge.judge(encodeGroup(group({ policyVersion: 5 })), SIGNED, at, accept);
    expect(used.has(18)).toBe(false);
    expect(await verdict(judge.judge(encodeGroup(group()), SIGNED, at, accept))).toEqual({ outcome: 'accepted', worker: 'w1' });
  });
});

describe('UsedTasks', () => {
  it('remembers the newest `capacity` task numbers and closes every one up to the newest forgotten', () => {
    const used = new UsedTasks(3);
    for (const seq of [5, 1, 9, 7]) used.add(seq); // 5 forgotten: every task up to 5 is closed
    expect([1, 2, 5, 6, 7, 8, 9, 10].map((s) => used.has(s))).toEqual([true, true, true, false, true, false, true, false]);
  });
});
