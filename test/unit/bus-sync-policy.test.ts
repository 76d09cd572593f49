// What each sync mode means, table-driven: which tasks a step issues, top-up, the oldest usable version, reissue.
import { AsyncPushPull, SequentialPull, syncPolicyFor, type SyncPolicy, type TaskState } from '../../bus/sync-policy.js';

const options = { batchSize: 4, maxStaleness: 2, taskWindow: 10 };
const fresh: TaskState = { issuedSeq: 0, stepIndex: 0, stepFirstSeq: 1, stepLastSeq: 0 };
const midStep3: TaskState = { issuedSeq: 14, stepIndex: 3, stepFirstSeq: 9, stepLastSeq: 12 };

describe('SequentialPull', () => {
  const policy: SyncPolicy = new SequentialPull(options);

  it.each([
    ['the first step reserves B new tasks, nothing to drop', 1, 0, fresh, { step: { stepIndex: 1, firstSeq: 1, lastSeq: 4 } }],
    ['a new step drops the last version\'s queued tasks and reserves B after the newest', 4, 3, midStep3, { dropQueuedOf: 2, step: { stepIndex: 4, firstSeq: 15, lastSeq: 18 } }],
    ['the same step again (a restarted learner) re-issues its own tasks', 3, 2, midStep3, { step: { stepIndex: 3, firstSeq: 9, lastSeq: 12 } }],
  ])('%s', (_, stepIndex, version, tasks, expected) => {
    expect(policy.issueForStep(stepIndex, version, tasks)).toEqual(expected);
  });

  it.each([
    ['oldestUsable: only the current version', () => policy.oldestUsable(7), 7],
    ['topUp: never (no window)', () => policy.topUp(0), 0],
    ['reissue: what B lacks', () => policy.reissue(1), 3],
    ['reissue: nothing when B are in flight', () => policy.reissue(6), 0],
    ['replaceUsedUp: one task per unusable group', () => policy.replaceUsedUp(3), 3],
    ['a stale group for a task of this step used it up', () => policy.usesUpStepTask(10, midStep3), true],
    ['a stale group for an earlier step\'s task did not', () => policy.usesUpStepTask(8, midStep3), false],
  ])('%s', (_, actual, expected) => {
    expect(actual()).toBe(expected);
  });

  it('does not keep a window full', () => expect(policy.keepsWindowFull).toBe(false));
});

describe('AsyncPushPull', () => {
  const policy: SyncPolicy = new AsyncPushPull(options);

  it.each([
    ['issues nothing per step (the window does)', () => policy.issueForStep(3, 2, midStep3), {}],
    ['oldestUsable: maxStaleness versions back', () => policy.oldestUsable(7), 5],
    ['oldestUsable may be below 0 early on', () => policy.oldestUsable(1), -1],
    ['topUp: what the window lacks', () => policy.topUp(4), 6],
    ['topUp: nothing when the window is full (or over)', () => policy.topUp(12), 0],
    ['reissue: what the window lacks', () => policy.reissue(7), 3],
    ['replaceUsedUp: nothing (the top-up replaces)', () => policy.replaceUsedUp(3), 0],
    ['no task is the step\'s own', () => policy.usesUpStepTask(10, midStep3), false],
  ])('%s', (_, actual, expected) => {
    expect(actual()).toEqual(expected);
  });

  it('keeps the window full', () => expect(policy.keepsWindowFull).toBe(true));
});

it.each([['SequentialPull', SequentialPull], ['AsyncPushPull', AsyncPushPull]] as const)('syncPolicyFor(%s)', (mode, kind) => {
  const policy = syncPolicyFor(mode, options);
  expect(policy).toBeInstanceOf(kind);
  expect(policy.mode).toBe(mode);
});
