// `rlkube run` end to end on this machine (real nats-server, real trainer and engines): the run survives
// killed processes and untrusted workers, and its counts add up.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerBus, connectBus, jobNames, watchLearnerProgress, type LearnerProgress } from '../../bus/index.js';
import { syntheticGroup, waitFor } from '../harness/groups.js';

interface Run {
  outDir: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  summary(): Record<string, any>;
  pids(): Record<string, number>;
}

function startRun(args: string[]): Run {
  const outDir = mkdtempSync(join(tmpdir(), 'rlkube-run-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'run', 'examples/reverse-cpu.yaml', '--out', outDir, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    outDir,
    child,
    exited: exited.then((code) => {
      if (code !== 0) console.error(`rlkube run exited ${code}:\n${stderr}`);
      return code;
    }),
    summary: () => JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')),
    pids: () => JSON.parse(readFileSync(join(outDir, 'processes.json'), 'utf8')),
  };
}

async function followProgress(run: Run) {
  const where = await waitFor('run.json', () => existsSync(join(run.outDir, 'run.json')) || undefined, 60_000);
  void where;
  const { natsUrl, namespace, job } = JSON.parse(readFileSync(join(run.outDir, 'run.json'), 'utf8'));
  const nc = await connectBus({ servers: natsUrl });
  let latest: LearnerProgress | undefined;
  const watch = await watchLearnerProgress(nc, { namespace, name: job }, (p) => (latest = p));
  return {
    nc,
    job: { namespace, name: job },
    step: () => latest?.step ?? 0,
    close: async () => {
      await watch.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
    },
  };
}

const countsAddUp = (summary: Record<string, any>) =>
  expect(summary.groups.accepted + summary.groups.stale + summary.groups.rejected).toBe(summary.groups.published);

describe('rlkube run', () => {
  it('finishes when a rollout agent and, later, the trainer are killed with SIGKILL, and its counts add up', async () => {
    const run = startRun(['--max-steps', '8']);
    const progress = await followProgress(run);
    await waitFor('step 2', () => progress.step() >= 2 || undefined, 180_000);
    process.kill(run.pids()['agent-cpu-0']!, 'SIGKILL');
    await waitFor('step 4', () => progress.step() >= 4 || undefined, 180_000);
    process.kill(run.pids().trainer!, 'SIGKILL');
    expect(await run.exited).toBe(0);
    await progress.close();
    const summary = run.summary();
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(8);
    expect(summary.restarts.trainer).toBeGreaterThanOrEqual(1);
    expect(summary.restarts['agent-cpu-0']).toBeGreaterThanOrEqual(1);
    countsAddUp(summary);
  });

  it('rejects and counts the groups of a worker that forges rewards, and trains on the honest ones', async () => {
    const run = startRun(['--max-steps', '5', '--mode', 'AsyncPushPull']);
    const progress = await followProgress(run);
    const liar = await WorkerBus.open(progress.nc, progress.job, { workerId: 'liar', pool: 'cpu' });
    let forged = 0;
    const lying = (async () => {
      while (run.child.exitCode === null && forged < 200) {
        const claimed = await liar.claim(1000).catch(() => undefined);
        if (!claimed) continue;
        const policy = await liar.policy();
        const group = syntheticGroup({ job: jobNames(progress.job).key, taskSeq: claimed.task.seq, policyVersion: policy?.version ?? 0, groupSize: 8, reward: 1, workerId: 'liar' });
        group.policyDigest = policy?.digest ?? group.policyDigest;
        group.verifierId = 'reverse/v1';
        await liar.publish(group).catch(() => undefined);
        claimed.done();
        forged++;
      }
    })();
    expect(await run.exited).toBe(0);
    await lying;
    await progress.close();
    const summary = run.summary();
    expect(forged).toBeGreaterThan(0);
    expect(summary.state).toBe('Succeeded');
    expect(summary.rejectedByReason.RewardMismatch).toBeGreaterThan(0);
    expect(summary.workers.liar.accepted).toBe(0);
    expect(summary.workers.liar.rejected).toBeGreaterThan(0);
    countsAddUp(summary);
  });
});
