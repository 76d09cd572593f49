// `rlkube run` end to end on this machine (real nats-server, real trainer and engines): the run survives
// killed processes and untrusted workers, and its counts add up.
import { execFileSync } from 'node:child_process';
import { WorkerBus, jobNames, type PolicyRecord, type Task, type TrajectoryGroup } from '../../bus/index.js';
import { defaultPython } from '../../cli/run.js';
import { syntheticGroup, waitFor } from '../harness/groups.js';
import { countsAddUp, followProgress, startRun, type Progress, type Run } from '../harness/run.js';

/** A worker that publishes forged groups for up to 60 tasks it claims (honest workers do the rest); returns how many. */
async function lie(
  run: Run,
  progress: Progress,
  workerId: string,
  forge: (task: Task, policy: PolicyRecord) => TrajectoryGroup,
): Promise<number> {
  const liar = await WorkerBus.open(progress.nc, progress.job, { workerId, pool: 'cpu' });
  // The run's end takes its nats-server away: stop waiting on it then.
  const runEnded = new AbortController();
  void run.exited.then(() => runEnded.abort());
  const ended = run.exited.then(() => undefined);
  let forged = 0;
  while (!runEnded.signal.aborted && forged < 60) {
    const claimed = await Promise.race([liar.claim(1000).catch(() => undefined), ended]);
    if (!claimed) continue;
    const policy = await liar.policy();
    if (!policy) {
      claimed.release();
      continue;
    }
    const group = forge(claimed.task, policy);
    Object.assign(group, { policyDigest: policy.digest, verifierId: 'reverse/v1' });
    await liar.publish(group, runEnded.signal).catch(() => undefined);
    claimed.done();
    forged++;
  }
  return forged;
}

/** The tiny model's tokenizer, from the trainer package (the one definition of its vocabulary). */
const tiny = (() => {
  const chars = execFileSync(defaultPython(), ['-c', 'import sys; from rlkube_trainer.model import CHARS; sys.stdout.write(CHARS)'], {
    env: { ...process.env, PYTHONPATH: 'images/trainer' },
    encoding: 'utf8',
  });
  const encode = (text: string) => [...text].map((c) => 3 + chars.indexOf(c));
  return { encode, encodePrompt: (text: string) => [1, ...encode(text)] };
})();

describe('rlkube run', () => {
  it('finishes when a rollout agent, the trainer, the nats-server and the learner agent are SIGKILLed in turn, and its counts add up', async () => {
    const run = startRun(['--max-steps', '10']);
    const progress = await followProgress(run);
    for (const [step, victim] of [[2, 'agent-cpu-0'], [4, 'trainer'], [6, 'nats-server'], [8, 'learner-agent']] as const) {
      await waitFor(`step ${step}`, () => progress.step() >= step || undefined, 300_000);
      process.kill(run.pids()[victim]!, 'SIGKILL');
    }
    expect(await run.exited).toBe(0);
    await progress.close();
    const summary = run.summary();
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(10);
    for (const victim of ['agent-cpu-0', 'trainer', 'nats-server', 'learner-agent']) expect(summary.restarts[victim]).toBeGreaterThanOrEqual(1);
    countsAddUp(summary);
  });

  it('rejects and counts the groups of workers that forge rewards or texts, and trains on the honest ones', async () => {
    const run = startRun(['--max-steps', '5', '--mode', 'AsyncPushPull']);
    const progress = await followProgress(run);
    const key = jobNames(progress.job).key;
    // Claims reward 1 for texts that score 0: the learner's own verifier catches it.
    const rewardLiar = lie(run, progress, 'reward-liar', (task, policy) =>
      syntheticGroup({ job: key, taskSeq: task.seq, policyVersion: policy.version, groupSize: 8, reward: 1, workerId: 'reward-liar' }));
    // Claims the right answer (reward 1, which the verifier confirms from the text) for tokens that say
    // something else: only the trainer, which reads the tokens, can tell.
    const textLiar = lie(run, progress, 'text-liar', (task, policy) => {
      const prompt = (task.payload as { prompt: string }).prompt;
      const answer = [...prompt.replace('=', '')].reverse().join('');
      const group = syntheticGroup({ job: key, taskSeq: task.seq, policyVersion: policy.version, groupSize: 8, reward: 1, workerId: 'text-liar' });
      group.promptTokenIds = Int32Array.from(tiny.encodePrompt(prompt));
      for (const c of group.completions) {
        c.tokenIds = Int32Array.from(tiny.encode('a'.repeat(answer.length)));
        c.logprobs = new Float32Array(c.tokenIds.length).fill(-0.5);
        c.text = answer;
      }
      return group;
    });
    expect(await run.exited).toBe(0);
    const forged = { reward: await rewardLiar, text: await textLiar };
    await progress.close();
    const summary = run.summary();
    expect(forged.reward).toBeGreaterThan(0);
    expect(forged.text).toBeGreaterThan(0);
    expect(summary.state).toBe('Succeeded');
    expect(summary.rejectedByReason.RewardMismatch).toBeGreaterThan(0);
    expect(summary.rejectedByReason.TextMismatch).toBeGreaterThan(0);
    expect(summary.groups.accepted).toBeGreaterThan(0);
    // The curve is the reward of what was trained on (a random init scores little), not the forged groups' 1.
    expect(summary.reward.initial).toBeLessThan(0.5);
    for (const liar of ['reward-liar', 'text-liar']) {
      expect(summary.workers[liar].accepted).toBe(0);
      expect(summary.workers[liar].rejected).toBeGreaterThan(0);
    }
    countsAddUp(summary);
  });
});
