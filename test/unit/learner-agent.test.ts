// The learner agent's step loop with fakes (no NATS, no Python): the bus is a settlement-backed fake, the
// trainer a scripted one. What is checked: each step counted once across a crash between publish and commit,
// and the trainer's exclusions moving the ledger through its one mutation path.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { LearnerAgent, type Clock, type LearnerAgentBus, type LearnerTrainer } from '../../agent/learner-agent.js';
import { agentMetrics } from '../../agent/metrics.js';
import type { TrainResult, TrainerState } from '../../agent/trainer-client.js';
import type { Batch, GroupCheck, LearnerProgress, PolicyRecord, RejectReason, TrainedStep } from '../../bus/index.js';
import type { LearnerState } from '../../bus/messages.js';
import { Settlement, emptyLearnerState } from '../../bus/settlement.js';
import { syntheticGroup } from '../harness/groups.js';

const JOB = 'test/agent';
const B = 4;
const DIGEST = `sha256:${'0'.repeat(64)}`; // what synthetic groups claim for every version

/** The learner bus as the agent sees it: groups from two workers, counted by a real Settlement kept in "KV". */
class FakeBus implements LearnerAgentBus {
  saved: LearnerState | undefined;
  settlement = this.restore();
  policies: PolicyRecord[] = [];
  progressRecords: LearnerProgress[] = [];
  nextTaskSeq = 1;
  failNextCommit = false;
  readonly control = {
    policy: async () => this.policies.at(-1),
    policyAt: async (version: number) => this.policies.find((p) => p.version === version),
    progress: async () => this.progressRecords.at(-1),
    putProgress: async (p: LearnerProgress) => void this.progressRecords.push(structuredClone(p)),
  };

  get counts() { return this.settlement.counts; }
  get ledger() { return this.settlement.ledger; }

  /** A learner process restarted: only what was saved is left. */
  restart(): void {
    this.settlement = this.restore();
  }

  async resume(stepsDone: number): Promise<TrainedStep | undefined> {
    const trained = this.settlement.resume(stepsDone);
    await this.settlement.save();
    return trained;
  }

  async nextBatch(stepIndex: number, policyVersion: number, verify: GroupCheck): Promise<Batch> {
    const groups = [];
    while (groups.length < B) {
      const seq = this.nextTaskSeq++;
      const group = syntheticGroup({ job: JOB, taskSeq: seq, policyVersion, workerId: `w${seq % 2}` });
      const verdict = await verify(group);
      if (verdict.ok) groups.push(group);
      else this.settlement.countRejected(seq, verdict.reason, group.workerId);
    }
    this.settlement.recordBatch({ stepIndex, policyVersion, groups: groups.map((g) => ({ seq: g.taskSeq, taskSeq: g.taskSeq, worker: g.workerId, version: g.policyVersion })) });
    await this.settlement.save();
    return { stepIndex, policyVersion, groups };
  }

  async commit(step: TrainedStep, excluded: ReadonlyArray<{ index: number; reason: RejectReason }>): Promise<void> {
    if (this.failNextCommit) {
      this.failNextCommit = false;
      throw new Error('killed between publish and commit');
    }
    this.settlement.commit(step.stepIndex, new Map(excluded.map((e) => [e.index, e.reason])));
    await this.settlement.save();
  }

  async publishPolicy(version: number, weights: { path: string; digest: string }): Promise<PolicyRecord> {
    const record: PolicyRecord = { v: 1, version, digest: weights.digest, location: { kind: 'uri', uri: weights.path }, createdAt: '' };
    this.policies.push(record);
    return record;
  }

  async drain(): Promise<number> { return this.published(); }
  async published(): Promise<number> { return this.nextTaskSeq - 1; }
  async deadLettered(): Promise<number> { return 0; }

  private restore(): Settlement {
    return new Settlement(structuredClone(this.saved ?? emptyLearnerState()), async (state) => void (this.saved = structuredClone(state)));
  }
}

/** A trainer that does each step once (a step asked again is answered from its stored result), excluding as scripted. */
class FakeTrainer implements LearnerTrainer {
  stepsDone = 0;
  readonly results: TrainResult[] = [];
  /** Step index (0-based, as the trainer numbers them) → the batch indexes it rejects. */
  readonly excludes = new Map<number, Array<{ index: number; reason: string }>>();

  state = async (): Promise<TrainerState> => ({ step: this.stepsDone, version: this.stepsDone, weights_path: `/w/v${this.stepsDone}`, digest: DIGEST, vocab_size: 64 });

  trainStep = async (step: number): Promise<TrainResult> => {
    if (step < this.stepsDone) return { ...this.results[step]!, replayed: true };
    if (step > this.stepsDone) throw new Error(`step ${step} out of order`);
    this.stepsDone++;
    const result = { ...(await this.state()), metrics: { loss: 0 }, rejected: (this.excludes.get(step) ?? []).map((e) => ({ ...e, value: null })) };
    this.results.push(result);
    return result;
  };
}

const clock: Clock = { now: () => 0, sleep: async () => undefined };

/** `forged`: tasks whose groups claim rewards the learner's environment does not give. */
function agentOf(bus: FakeBus, trainer: FakeTrainer, logs: string[] = [], forged = new Set<number>()) {
  const log = pino({ level: 'warn' }, new Writable({ write: (line, _enc, done) => { logs.push(String(line)); done(); } }));
  const environment = {
    task: async (seq: number) => ({ seq, prompt: `p${seq}` }),
    score: async (seq: number, completions: string[]) => ({ graderId: 'test', rewards: completions.map((_, c) => c / B + (forged.has(seq) ? 0.5 : 0)) }),
  };
  return new LearnerAgent(
    { bus, trainer, environment, clock, log, metrics: agentMetrics(), signal: new AbortController().signal, assertLeader: () => undefined },
    { maxSteps: 3, mode: 'SequentialPull', maxStaleness: 0, groupSize: B, rewardTolerance: 1e-6, graderId: 'test' },
  );
}

const ledgerAccepted = (bus: FakeBus) => bus.ledger.totals.accepted;

describe('LearnerAgent', () => {
  it('a step that fails between publish and commit is counted once, after the restart, with the trainer\'s exclusions', async () => {
    const bus = new FakeBus();
    const trainer = new FakeTrainer();
    trainer.excludes.set(1, [{ index: 0, reason: 'LogprobMismatch' }]);
    const first = agentOf(bus, trainer);
    await first.resume();
    await first.step();
    bus.failNextCommit = true;
    await expect(first.step()).rejects.toThrow('killed between publish and commit');
    // Trained and published, never counted nor reported.
    expect(trainer.stepsDone).toBe(2);
    expect(bus.policies.map((p) => p.version)).toEqual([0, 1, 2]);
    expect(bus.progressRecords.at(-1)?.step).toBe(1);
    expect(bus.counts.accepted).toBe(B);

    bus.restart();
    const second = agentOf(bus, trainer);
    await second.resume();
    expect(bus.policies.map((p) => p.version)).toEqual([0, 1, 2]); // v2 was announced already
    expect(bus.counts).toMatchObject({ accepted: 2 * B - 1, rejected: 1, rejectedByReason: { LogprobMismatch: 1 } });
    expect(bus.progressRecords.at(-1)).toMatchObject({ step: 2, groups: { accepted: 2 * B - 1, rejected: 1 } });
    await second.step();
    expect(second.finished).toBe(true);
    await second.finish();
    const last = bus.progressRecords.at(-1)!;
    expect(last).toMatchObject({ state: 'Succeeded', step: 3, groups: { accepted: 3 * B - 1, rejected: 1, stale: 0, leftOver: 0, published: 3 * B } });
    expect(Object.values(last.workers!).reduce((a, w) => a + w.accepted, 0)).toBe(3 * B - 1);
  });

  it('a group the trainer rejects after the learner accepted it moves to the rejected column of its worker\'s ledger', async () => {
    const bus = new FakeBus();
    const trainer = new FakeTrainer();
    trainer.excludes.set(0, [{ index: 1, reason: 'TextMismatch' }]);
    const agent = agentOf(bus, trainer);
    await agent.resume();
    await agent.step();
    // Task 2 (index 1) came from w0: that worker's accept became a rejection; nothing else moved.
    expect(bus.ledger.snapshot()).toEqual({ w1: { accepted: 2, rejected: 0 }, w0: { accepted: 1, rejected: 1 } });
    expect(ledgerAccepted(bus)).toBe(bus.counts.accepted);
    expect(bus.counts).toMatchObject({ accepted: B - 1, rejected: 1, rejectedByReason: { TextMismatch: 1 } });
    // The reward of what was trained on: the excluded group's rewards left out (each group's mean is the same here).
    expect(bus.progressRecords.at(-1)?.reward).toBeCloseTo((0 + 1 + 2 + 3) / 4 / B);
  });

  it('a group the learner\'s own group check rejects counts against its worker, and the step still gets B groups', async () => {
    const bus = new FakeBus();
    const trainer = new FakeTrainer();
    const agent = agentOf(bus, trainer, [], new Set([3]));
    await agent.resume();
    await agent.step();
    expect(bus.counts).toMatchObject({ accepted: B, rejected: 1, rejectedByReason: { RewardMismatch: 1 } });
    expect(bus.ledger.snapshot()).toEqual({ w1: { accepted: 2, rejected: 1 }, w0: { accepted: 2, rejected: 0 } });
    expect(trainer.results[0]?.step).toBe(1);
  });

  it('a Failed record that cannot be written is logged with the failure, not lost silently', async () => {
    const bus = new FakeBus();
    const logs: string[] = [];
    const agent = agentOf(bus, new FakeTrainer(), logs);
    await agent.resume();
    bus.control.putProgress = async () => { throw new Error('bus away'); };
    await agent.fail(Object.assign(new Error('trainer refused'), { reason: 'StepOutOfOrder' }));
    expect(logs.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ level: 40, failure: 'StepOutOfOrder: trainer refused', err: 'Error: bus away', msg: 'Failed progress record not written' })]);
  });
});
