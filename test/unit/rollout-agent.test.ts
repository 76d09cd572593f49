// The rollout agent against fakes of its bus, engine and environment on a fake clock: a task's whole path, an
// engine that goes away and comes back, and the sync mode's say over which policy generates (planTask).
import { pino } from 'pino';
import { agentMetrics } from '../../agent/metrics.js';
import { HttpError } from '../../agent/http.js';
import type { PolicyFile, Sample } from '../../agent/engine-client.js';
import type { EnvironmentInfo, Scores, TaskPrompt } from '../../agent/environment-client.js';
import { RolloutAgent, planTask, type RolloutBus, type RolloutEngine, type RolloutEnvironment, type RolloutSettings } from '../../agent/rollout-agent.js';
import type { ClaimedTask, Heartbeat, PolicyRecord, SyncMode, TrajectoryGroup, Watch } from '../../bus/index.js';
import { EnvironmentUnusable } from '../../agent/environment-client.js';
import { FakeClock } from '../harness/clock.js';

const JOB_KEY = 'default.reverse';
const GROUP_SIZE = 4;

const policy = (version: number, location: PolicyRecord['location'] = { kind: 'uri', uri: `/shared/policy-v${version}.safetensors` }): PolicyRecord => ({
  v: 1,
  version,
  digest: `sha256:${String(version).padStart(64, '0')}`,
  location,
  createdAt: '2026-01-01T00:00:00Z',
});

/** A queue of tasks; what the agent does with each is recorded; an empty queue stops the agent. */
class FakeBus implements RolloutBus {
  readonly queue: ClaimedTask[] = [];
  readonly outcomes = new Map<string, string[]>();
  readonly published: TrajectoryGroup[] = [];
  readonly fetched: Array<{ version: number; path: string }> = [];
  readonly heartbeats: Array<Heartbeat['state']> = [];
  watchStopped = false;

  constructor(private readonly policies: PolicyRecord[], private readonly whenEmpty: () => void) {}

  offer(seq: number, policyVersion: number): void {
    const taskId = `${JOB_KEY}.t${seq}`;
    const record = (outcome: string) => this.outcomes.set(taskId, [...(this.outcomes.get(taskId) ?? []), outcome]);
    const claimed: ClaimedTask = {
      task: { v: 1, job: JOB_KEY, taskId, seq, policyVersion, payload: null },
      redeliveries: 0,
      done: () => record('done'),
      // A released task comes back, as the queue redelivers it.
      release: () => { record('released'); this.queue.push(claimed); },
      drop: (reason) => record(`dropped: ${reason}`),
    };
    this.queue.push(claimed);
  }

  async claim(): Promise<ClaimedTask | undefined> {
    const next = this.queue.shift();
    if (!next) this.whenEmpty();
    return next;
  }
  async publish(group: TrajectoryGroup): Promise<void> { this.published.push(group); }
  async heartbeat(state: Heartbeat['state']): Promise<void> { this.heartbeats.push(state); }
  async policyAt(version: number): Promise<PolicyRecord | undefined> { return this.policies.find((p) => p.version === version); }
  async watchPolicy(onChange: (record: PolicyRecord) => void): Promise<Watch> {
    for (const record of this.policies) onChange(record);
    return { stop: async () => { this.watchStopped = true; } };
  }
  async weightsToFile(record: PolicyRecord, path: string): Promise<void> { this.fetched.push({ version: record.version, path }); }
}

/** An engine that answers, or (after `goAway`) refuses connections for `healthFailures` health checks. */
class FakeEngine implements RolloutEngine {
  readonly loads: PolicyFile[] = [];
  healthChecks = 0;
  private awayFor = 0;
  private completionsToFail = 0;
  constructor(private readonly healthFailures = 3) {}

  /** The next completion call finds the engine gone (it restarts: `healthFailures` checks fail). */
  goAwayDuringNextCompletion(): void { this.completionsToFail++; }

  health = async (): Promise<unknown> => {
    this.healthChecks++;
    if (this.awayFor > 0) {
      this.awayFor--;
      throw new HttpError('Unreachable', 'GET /health: connection refused');
    }
    return {};
  };
  load = async (file: PolicyFile): Promise<void> => { this.loads.push(file); };
  complete = async (prompt: string, n: number): Promise<Sample[]> => {
    if (this.completionsToFail > 0) {
      this.completionsToFail--;
      this.awayFor = this.healthFailures;
      throw new HttpError('Unreachable', 'POST /v1/completions: connection reset');
    }
    return Array.from({ length: n }, (_, i) => ({ text: `${prompt}:${i}`, tokenIds: [i, i + 1], logprobs: [-0.5, -0.25], promptTokenIds: [7, 8], finishReason: 'stop' }));
  };
}

class FakeEnvironment implements RolloutEnvironment {
  readonly info: EnvironmentInfo = { status: 'ok', environment: 'reverse', graderId: 'reverse@1' };
  constructor(private readonly unusable?: EnvironmentUnusable) {}
  ready = async (): Promise<EnvironmentInfo> => {
    if (this.unusable) throw this.unusable;
    return this.info;
  };
  task = async (seq: number): Promise<TaskPrompt> => ({ seq, prompt: `prompt ${seq}` });
  // Reward 1 for every other completion: the published group must carry these, in order.
  score = async (_seq: number, completions: string[]): Promise<Scores> => ({ graderId: this.info.graderId, rewards: completions.map((_, i) => i % 2) });
}

function setUp(mode: SyncMode, policies: PolicyRecord[], engine = new FakeEngine(), environment = new FakeEnvironment()) {
  const clock = new FakeClock();
  const controller = new AbortController();
  const bus = new FakeBus(policies, () => controller.abort());
  const metrics = agentMetrics();
  const settings: RolloutSettings = { jobKey: JOB_KEY, workerId: 'w1', pool: 'p', mode, groupSize: GROUP_SIZE, maxTokens: 16, temperature: 1, weightsDir: '/tmp/rlkube-test-unused' };
  const agent = new RolloutAgent({ bus, engine, environment, clock }, settings, pino({ level: 'silent' }), metrics);
  /** Starts the agent; `stopped()` says whether it has returned (it throws what the agent threw). */
  const start = () => {
    let outcome: { error?: unknown } | undefined;
    agent.run(controller.signal).then(() => { outcome = {}; }, (error: unknown) => { outcome = { error }; });
    return () => {
      if (outcome?.error) throw outcome.error;
      return outcome !== undefined;
    };
  };
  /** Runs the agent until it stops (here: the queue ran empty), moving the fake clock meanwhile. */
  const run = () => clock.until('the agent to stop', start(), 50);
  return { bus, engine, environment, clock, controller, metrics, start, run };
}

const counted = async (counter: { get(): Promise<{ values: Array<{ value: number; labels: object }> }> }) => (await counter.get()).values;

describe('RolloutAgent', () => {
  it('claims a task, generates with its policy, scores the completions and publishes the group', async () => {
    const { bus, engine, metrics, run } = setUp('SequentialPull', [policy(3, { kind: 'object', name: 'weights-v3', size: 10 })]);
    bus.offer(1, 3);
    await run();

    expect(bus.outcomes.get(`${JOB_KEY}.t1`)).toEqual(['done']);
    expect(bus.fetched).toEqual([{ version: 3, path: '/tmp/rlkube-test-unused/policy-v3.safetensors' }]);
    expect(engine.loads).toEqual([{ version: 3, path: '/tmp/rlkube-test-unused/policy-v3.safetensors', digest: policy(3).digest }]);
    expect(bus.published).toHaveLength(1);
    const group = bus.published[0]!;
    expect(group).toMatchObject({ job: JOB_KEY, taskId: `${JOB_KEY}.t1`, taskSeq: 1, policyVersion: 3, policyDigest: policy(3).digest, workerId: 'w1', pool: 'p', graderId: 'reverse@1' });
    expect(Array.from(group.promptTokenIds)).toEqual([7, 8]);
    expect(group.completions.map((c) => [c.text, c.reward])).toEqual([['prompt 1:0', 0], ['prompt 1:1', 1], ['prompt 1:2', 0], ['prompt 1:3', 1]]);
    expect(Array.from(group.completions[1]!.logprobs)).toEqual([-0.5, -0.25]);
    expect(await counted(metrics.groupsPublished)).toMatchObject([{ value: 1 }]);
    expect(bus.heartbeats).toEqual(expect.arrayContaining(['Loading', 'Generating', 'Idle']));
    expect(bus.heartbeats.at(-1)).toBe('Stopping');
    expect(bus.watchStopped).toBe(true);
  });

  it('releases the task of an engine that went away, waits for the engine, loads the policy again and then publishes', async () => {
    const engine = new FakeEngine(3);
    const { bus, clock, metrics, run } = setUp('SequentialPull', [policy(0)], engine);
    engine.goAwayDuringNextCompletion();
    bus.offer(1, 0);
    await run();

    expect(bus.outcomes.get(`${JOB_KEY}.t1`)).toEqual(['released', 'done']);
    // One check at start-up, then three refused while the engine restarts, then the one that answers.
    expect(engine.healthChecks).toBe(1 + 3 + 1);
    // The restarted engine holds its initial weights: the policy is loaded a second time.
    expect(engine.loads.map((l) => l.version)).toEqual([0, 0]);
    expect(bus.published.map((g) => g.taskId)).toEqual([`${JOB_KEY}.t1`]);
    expect(await counted(metrics.engineErrors)).toMatchObject([{ value: 1, labels: { reason: 'Unreachable' } }]);
    // The waits were the peer back-off's, on the injected clock: 3 sleeps of at least half of 250, 500, 1000 ms.
    expect(clock.now()).toBeGreaterThanOrEqual((250 + 500 + 1000) / 2);
  });

  it('in SequentialPull, drops a task that a newer policy superseded and generates the current one', async () => {
    const { bus, engine, run } = setUp('SequentialPull', [policy(1), policy(2)]);
    bus.offer(1, 1);
    bus.offer(2, 2);
    await run();

    expect(bus.outcomes.get(`${JOB_KEY}.t1`)).toEqual(['dropped: Superseded']);
    expect(bus.outcomes.get(`${JOB_KEY}.t2`)).toEqual(['done']);
    expect(bus.published.map((g) => [g.taskSeq, g.policyVersion])).toEqual([[2, 2]]);
    expect(engine.loads.map((l) => l.version)).toEqual([2]);
  });

  it('in AsyncPushPull, generates an older task with the newest policy', async () => {
    const { bus, engine, run } = setUp('AsyncPushPull', [policy(1), policy(2)]);
    bus.offer(1, 1);
    await run();

    expect(bus.outcomes.get(`${JOB_KEY}.t1`)).toEqual(['done']);
    expect(bus.published.map((g) => [g.taskSeq, g.policyVersion])).toEqual([[1, 2]]);
    expect(engine.loads.map((l) => l.version)).toEqual([2]);
  });

  it('claims nothing from an environment that says it cannot be used, and stops when told', async () => {
    const environment = new FakeEnvironment(new EnvironmentUnusable('UnknownArgument', 'minLen is not an argument of reverse'));
    const { bus, clock, controller, engine, start } = setUp('SequentialPull', [policy(0)], new FakeEngine(), environment);
    bus.offer(1, 0);
    const stopped = start();
    // Alive (its heartbeats go on) but idle, until stopped.
    await clock.until('a heartbeat', () => bus.heartbeats.length > 0, 50);
    controller.abort();
    await clock.until('the agent to stop', stopped);

    expect(bus.queue).toHaveLength(1); // never claimed
    expect(bus.published).toEqual([]);
    expect(engine.healthChecks).toBe(0);
  });
});

describe('planTask', () => {
  it.each([
    ['SequentialPull', 3, undefined, { action: 'generate', version: 3 }],
    ['SequentialPull', 3, 3, { action: 'generate', version: 3 }],
    ['SequentialPull', 3, 4, { action: 'drop', reason: 'Superseded' }],
    // A task ahead of the newest policy this agent has heard of: its version is published, the watch is behind.
    ['SequentialPull', 5, 4, { action: 'generate', version: 5 }],
    ['AsyncPushPull', 3, undefined, { action: 'generate', version: 3 }],
    ['AsyncPushPull', 3, 7, { action: 'generate', version: 7 }],
    ['AsyncPushPull', 5, 4, { action: 'generate', version: 5 }],
  ] as const)('%s, task v%i, newest v%s → %j', (mode, taskVersion, newest, plan) => {
    expect(planTask(mode, taskVersion, newest)).toEqual(plan);
  });
});
