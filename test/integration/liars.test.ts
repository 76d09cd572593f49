// `rlkube run` with untrusted workers beside the honest ones: every kind of liar is caught, none of their groups
// is trained on, each rejection is counted by its reason, and accepted + stale + rejected = published.
import { execFileSync } from 'node:child_process';
import { WorkerBus, decodeGroup, jobNames, type PolicyRecord, type Task, type TrajectoryGroup } from '../../bus/index.js';
import { projectPython } from '../../local/python.js';
import { syntheticGroup } from '../harness/groups.js';
import { countsAddUp, followProgress, startRun, type Progress, type Run } from '../harness/run.js';

/** Groups each liar publishes: few enough that all are judged long before the run ends. */
const LIES = 12;

/** A worker that answers up to LIES tasks it claims with forged groups (honest workers do the rest); returns how many. */
async function lie(
  run: Run,
  progress: Progress,
  workerId: string,
  forge: (task: Task, policy: PolicyRecord, bus: WorkerBus) => Promise<TrajectoryGroup | undefined>,
): Promise<number> {
  const liar = await WorkerBus.open(progress.nc, progress.job, { workerId, pool: 'cpu' });
  // The run's end takes its nats-server away: stop waiting on it then.
  const runEnded = new AbortController();
  void run.exited.then(() => runEnded.abort());
  const ended = run.exited.then(() => undefined);
  let forged = 0;
  while (!runEnded.signal.aborted && forged < LIES) {
    const claimed = await Promise.race([liar.claim(1000).catch(() => undefined), ended]);
    if (!claimed) continue;
    const policy = await liar.policy();
    const group = policy && (await forge(claimed.task, policy, liar));
    if (!group) {
      claimed.release(200);
      continue;
    }
    await liar.publish({ ...group, graderId: 'reverse/v1' }, runEnded.signal);
    claimed.done();
    forged++;
  }
  return forged;
}

/** The tiny model's tokenizer, from the trainer package (the one definition of its vocabulary). */
const tiny = (() => {
  const chars = execFileSync(projectPython(), ['-c', 'import sys; from rlkube_policy.model import CHARS; sys.stdout.write(CHARS)'], {
    encoding: 'utf8',
  });
  const encode = (text: string) => [...text].map((c) => 3 + chars.indexOf(c));
  return { encode, encodePrompt: (text: string) => [1, ...encode(text)] };
})();

const promptOf = (task: Task) => (task.payload as { prompt: string }).prompt;
const reversed = (prompt: string) => [...prompt.replace('=', '')].reverse().join('');

/** The task's right answer (reward 1, as the learner's group check confirms) with made-up log-probs: the model's never say that. */
function rightAnswer(job: string, task: Task, policy: { version: number; digest: string }, workerId: string): TrajectoryGroup {
  const answer = reversed(promptOf(task));
  const group = syntheticGroup({ job, taskSeq: task.seq, policyVersion: policy.version, groupSize: 8, reward: 1, workerId });
  group.policyDigest = policy.digest;
  group.promptTokenIds = Int32Array.from(tiny.encodePrompt(promptOf(task)));
  for (const c of group.completions) {
    c.tokenIds = Int32Array.from(tiny.encode(answer));
    c.logprobs = new Float32Array(c.tokenIds.length).fill(-0.01);
    c.text = answer;
  }
  return group;
}

describe('rlkube run with lying workers', () => {
  it('trains on none of their groups — forged rewards, texts, stale groups, copies, signatures — and counts each by reason', async () => {
    const run = startRun(['--max-steps', '8', '--mode', 'AsyncPushPull']);
    const progress = await followProgress(run);
    const key = jobNames(progress.job).key;
    const honest = (workerId: string) => workerId.startsWith(`${progress.job.name}-cpu-`);

    // The honest workers' groups as they are published (any subscriber of the job's subjects sees them), for the
    // copier to copy.
    const honestGroups: TrajectoryGroup[] = [];
    const impersonated = new Set<string>(); // the signature forger's groups, which name an honest worker
    const reading = progress.nc.subscribe(jobNames(progress.job).trajWildcard, {
      callback: (err, msg) => {
        if (err) return;
        // (a copy of the bytes: the group's arrays are views of them)
        const group = decodeGroup(msg.data.slice(), { job: key, vocabSize: 1 << 18, maxBytes: 1 << 24 });
        if (honest(group.workerId) && !impersonated.has(group.taskId)) honestGroups.push(group);
      },
    });

    const liars = {
      // Claims reward 1 for texts that score 0: the learner's own group check catches it.
      reward: lie(run, progress, 'reward-liar', async (task, policy) => ({
        ...syntheticGroup({ job: key, taskSeq: task.seq, policyVersion: policy.version, groupSize: 8, reward: 1, workerId: 'reward-liar' }),
        policyDigest: policy.digest,
      })),
      // The right answer's text (the grader confirms reward 1) for tokens that say something else: the trainer,
      // which reads the tokens, catches it.
      text: lie(run, progress, 'text-liar', async (task, policy) => {
        const group = rightAnswer(key, task, policy, 'text-liar');
        for (const c of group.completions) c.tokenIds = Int32Array.from(tiny.encode('z'.repeat(c.text.length)));
        return group;
      }),
      // The right answer claimed as generated by the previous version, which older groups' checks once skipped:
      // the trainer compares its log-probs with that version's weights.
      stale: lie(run, progress, 'stale-forger', async (task, policy, bus) => {
        const previous = policy.version > 0 ? await bus.policyAt(policy.version - 1) : policy;
        return previous && rightAnswer(key, task, previous, 'stale-forger');
      }),
      // An honest worker's completions (its newest group's, so the copy is not merely stale), for a task of its own.
      copy: lie(run, progress, 'copier', async (task) => {
        const original = honestGroups.pop();
        return original && { ...original, taskId: task.taskId, taskSeq: task.seq, workerId: 'copier', pool: 'cpu' };
      }),
      // Groups in an honest worker's name, signed with a key of its own: credit or blame for another.
      signature: lie(run, progress, 'signature-forger', async (task, policy) => {
        impersonated.add(task.taskId);
        return rightAnswer(key, task, policy, `${progress.job.name}-cpu-0`);
      }),
    };
    expect(await run.exited).toBe(0);
    const forged = Object.fromEntries(await Promise.all(Object.entries(liars).map(async ([kind, n]) => [kind, await n])));
    reading.unsubscribe();
    await progress.close();
    const summary = run.summary();
    for (const kind of Object.keys(liars)) expect(forged[kind]).toBe(LIES);
    expect(summary.state).toBe('Succeeded');
    // Each liar's groups are rejected for what it lied about (the stale forger's may also go stale first).
    expect(summary.rejectedByReason.RewardMismatch).toBe(LIES);
    expect(summary.rejectedByReason.TextMismatch).toBe(LIES);
    expect(summary.rejectedByReason.Copied).toBe(LIES);
    expect(summary.rejectedByReason.BadSignature).toBe(LIES);
    expect(summary.rejectedByReason.LogprobMismatch).toBeGreaterThan(0);
    for (const liar of ['reward-liar', 'text-liar', 'stale-forger', 'copier']) expect(summary.workers[liar]?.accepted).toBe(0);
    for (const liar of ['reward-liar', 'text-liar', 'copier']) expect(summary.workers[liar]?.rejected).toBe(LIES);
    // Nothing is booked against the worker whose name the signature forger used, and nothing for the forger.
    expect(summary.workers[`${progress.job.name}-cpu-0`]?.rejected).toBe(0);
    expect(summary.workers['signature-forger']).toBeUndefined();
    // Every accepted group is an honest worker's.
    const honestAccepted = Object.entries(summary.workers)
      .filter(([worker]) => honest(worker)).reduce((sum, [, entry]) => sum + entry.accepted, 0);
    expect(honestAccepted).toBe(summary.groups.accepted);
    // The curve is the reward of what was trained on (a random init scores little), not the forged groups' 1.
    expect(summary.reward.initial).toBeLessThan(0.5);
    expect(summary.groups.rejected).toBe(Object.values(summary.rejectedByReason as Record<string, number>).reduce((a, b) => a + b, 0));
    countsAddUp(summary);
  });
});
