// `rlkube run` end to end on this machine (real nats-server, real trainer and engines): the run survives
// killed processes, and its counts add up (untrusted workers: liars.test.ts).
import { waitFor } from '../harness/groups.js';
import { countsAddUp, followProgress, startRun } from '../harness/run.js';

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
});
