// Seeded chaos against `rlkube run` (real nats-server, trainer, engines and agents): every kind of process is
// SIGKILLed once, and the nats-server, a rollout agent and the trainer are each stalled with SIGSTOP for longer
// than the pull heartbeats and the ack waits — in an order and at steps drawn from the seed. Invariant: stalls
// and crashes are transient, so the job ends Succeeded and every group published is counted exactly once.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { waitFor } from '../harness/groups.js';
import { countsAddUp, followProgress, startRun, type Run } from '../harness/run.js';

/** Small steps (8 groups of 4), so the run's time goes to the chaos, not to training. */
const MANIFEST = {
  apiVersion: 'rlkube.dev/v1alpha1',
  kind: 'RLJob',
  metadata: { name: 'chaos' },
  spec: {
    model: { name: 'tiny', maxTokens: 8 },
    environment: { name: 'reverse', args: { minLength: 2, maxLength: 4, alphabet: 'abcd' } },
    algorithm: { groupSize: 4, batchSize: 8, maxSteps: 16, seed: 1 },
    sync: { mode: 'SequentialPull' },
    rollout: { pools: [{ name: 'cpu', replicas: 2, engine: { kind: 'tiny' } }] },
    learner: { nodes: 1, gpusPerNode: 0 },
  },
};
const ACK_WAIT_MS = 2000;

/** mulberry32: a small seeded PRNG, so a failing seed replays the same chaos. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates, in place. */
function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

type Event = { step: number; action: 'SIGKILL' | 'SIGSTOP'; process: string; pauseMs?: number };

/** One SIGKILL of each process kind and one pause of each kind that can stall, shuffled onto steps 1–9. */
function chaosPlan(seed: number): Event[] {
  const random = prng(seed);
  const replica = () => (random() < 0.5 ? 0 : 1);
  const events: Array<Omit<Event, 'step'>> = [
    { action: 'SIGKILL', process: 'nats-server' },
    { action: 'SIGKILL', process: `agent-cpu-${replica()}` },
    { action: 'SIGKILL', process: `engine-cpu-${replica()}` },
    { action: 'SIGKILL', process: 'trainer' },
    { action: 'SIGKILL', process: 'learner-agent' },
    // Paused past the pull's idle heartbeats (≤ 1 s), the task and the group ack waits (2 s each).
    ...['nats-server', `agent-cpu-${replica()}`, 'trainer'].map((process) => ({
      action: 'SIGSTOP' as const, process, pauseMs: 2 * ACK_WAIT_MS + Math.round(random() * 1000),
    })),
  ];
  const steps = shuffle(Array.from({ length: 9 }, (_, i) => i + 1), random).slice(0, events.length).sort((a, b) => a - b);
  return shuffle(events, random).map((e, i) => ({ ...e, step: steps[i]! }));
}

type TimedAction = { atMs: number; signal: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'; process: string };

/**
 * The learner agent and the trainer killed close together while a rollout agent and the nats-server are stopped
 * (the nats-server past the pull heartbeats, the agent past its task ack wait): a plan that once left groups
 * counted nowhere and the ledger restarted from zero. Times (ms after the plan's step is reached) from the seed.
 */
function closeKillsPlan(seed: number, ackWaitMs: number): { step: number; actions: TimedAction[] } {
  const random = prng(seed);
  const between = (low: number, high: number) => low + Math.round(random() * (high - low));
  const agent = `agent-cpu-${random() < 0.5 ? 0 : 1}`;
  const learnerKilledAt = between(200, 1200);
  const actions: TimedAction[] = [
    { atMs: 0, signal: 'SIGSTOP', process: agent },
    { atMs: 0, signal: 'SIGSTOP', process: 'nats-server' },
    { atMs: learnerKilledAt, signal: 'SIGKILL', process: 'learner-agent' },
    { atMs: learnerKilledAt + between(300, 1500), signal: 'SIGKILL', process: 'trainer' },
    { atMs: between(3000, 5000), signal: 'SIGCONT', process: 'nats-server' },
    { atMs: ackWaitMs + between(1000, 3000), signal: 'SIGCONT', process: agent },
  ];
  return { step: between(2, 4), actions: actions.sort((a, b) => a.atMs - b.atMs) };
}

/** The pid of `name` once it is running again (not `notPid`, a process killed earlier); null once the run has ended. */
async function livePid(run: Run, name: string, notPid?: number): Promise<number | null> {
  let ended = false;
  void run.exited.then(() => (ended = true));
  return waitFor(`${name} to be running`, () => {
    if (ended) return null;
    const pid = run.pids()[name];
    if (pid === undefined || pid === notPid) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  }, 120_000);
}

describe('rlkube run under seeded chaos', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rlkube-chaos-'));
  it.each([
    [1, 'AsyncPushPull'],
    [2, 'SequentialPull'],
    [3, 'AsyncPushPull'],
  ])('seed %i (%s): SIGKILLs of every process kind and SIGSTOP stalls end Succeeded, every group counted once', async (seed, mode) => {
    const manifest = join(dir, `chaos-${seed}.yaml`);
    writeFileSync(manifest, stringify({ ...MANIFEST, spec: { ...MANIFEST.spec, sync: { mode } } }));
    const plan = chaosPlan(seed);
    const run = startRun(['--ack-wait', String(ACK_WAIT_MS)], manifest);
    const progress = await followProgress(run);
    const killed = new Map<string, number>();
    const killedAtStep = new Map<string, number>();
    let applied = 0;
    for (const event of plan) {
      await waitFor(`step ${event.step}`, () => progress.step() >= event.step || undefined, 300_000);
      // An asynchronous run may finish while the events before were being applied (each stall lasts seconds).
      const pid = await livePid(run, event.process, killed.get(event.process));
      if (pid === null) break;
      applied++;
      if (event.action === 'SIGKILL') {
        process.kill(pid, 'SIGKILL');
        killed.set(event.process, pid);
        killedAtStep.set(event.process, progress.step());
      } else {
        process.kill(pid, 'SIGSTOP');
        // The stall's length is what is under test (not a synchronisation).
        await new Promise((r) => setTimeout(r, event.pauseMs));
        process.kill(pid, 'SIGCONT');
      }
    }
    expect(await run.exited).toBe(0);
    expect(applied).toBeGreaterThanOrEqual(plan.length - 2); // the chaos did happen, nearly all of it
    await progress.close();
    const summary = run.summary();
    console.log(`chaos seed ${seed} (${mode}): ${JSON.stringify(plan)} → ${JSON.stringify({ state: summary.state, steps: summary.steps, groups: summary.groups, restarts: summary.restarts })}`);
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(MANIFEST.spec.algorithm.maxSteps);
    // The kills took effect; a process killed near the end may not be restarted before the job is done (the
    // supervisor restarts with back-off), one killed earlier must have been.
    const maxSteps = MANIFEST.spec.algorithm.maxSteps;
    for (const [name, pid] of killed) {
      expect(() => process.kill(pid, 0)).toThrow();
      if (killedAtStep.get(name)! <= maxSteps - 4) expect(summary.restarts[name]).toBeGreaterThanOrEqual(1);
    }
    countsAddUp(summary);
  });

  it.each([[4], [5]])('seed %i (AsyncPushPull): the learner agent and the trainer killed while an agent and the nats-server are stopped; every group counted once, the ledger attributing every accepted one', async (seed) => {
    const ackWaitMs = 6000;
    const maxSteps = 6;
    const manifest = join(dir, `close-kills-${seed}.yaml`);
    const spec = { ...MANIFEST.spec, algorithm: { ...MANIFEST.spec.algorithm, maxSteps }, sync: { mode: 'AsyncPushPull' } };
    writeFileSync(manifest, stringify({ ...MANIFEST, spec }));
    const plan = closeKillsPlan(seed, ackWaitMs);
    const run = startRun(['--ack-wait', String(ackWaitMs)], manifest);
    const progress = await followProgress(run);
    await waitFor(`step ${plan.step}`, () => progress.step() >= plan.step || undefined, 300_000);
    const pids = Object.fromEntries(await Promise.all([...new Set(plan.actions.map((a) => a.process))].map(async (name) => [name, (await livePid(run, name))!] as const)));
    const started = Date.now();
    for (const action of plan.actions) {
      // The plan's timing is what is under test (not a synchronisation).
      await new Promise((r) => setTimeout(r, Math.max(0, started + action.atMs - Date.now())));
      process.kill(pids[action.process]!, action.signal);
    }
    expect(await run.exited).toBe(0);
    await progress.close();
    const summary = run.summary();
    console.log(`chaos seed ${seed} (close kills): ${JSON.stringify(plan)} → ${JSON.stringify({ state: summary.state, steps: summary.steps, groups: summary.groups, workers: summary.workers, restarts: summary.restarts })}`);
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(maxSteps);
    for (const killed of ['learner-agent', 'trainer']) expect(summary.restarts[killed]).toBeGreaterThanOrEqual(1);
    countsAddUp(summary);
  });
});
