// The learner's settlement: how every published group ends (accepted, stale, rejected or left over: exactly one
// count each), the per-worker ledger beside the counts, what was settled that may come back, and the batch in
// training — all in one persisted LearnerState, so that any restart resumes them exactly. No NATS here: the
// bus hands it a `persist` function and sends the acks and terms once a save has returned.
import type { RejectReason } from './errors.js';
import { WIRE_VERSION, type BatchRecord, type LearnerState, type WorkerTally } from './messages.js';
import type { TaskState } from './sync-policy.js';

export type Settled = 'ack' | 'term';
export type LearnerCounts = LearnerState['counts'];

/** Verdicts per worker identity. One mutation path (`record`), called only with the counts beside it. */
export class Ledger {
  constructor(private readonly tally: Record<string, WorkerTally>) {}

  record(workerId: string, verdict: keyof WorkerTally, groups = 1): void {
    if (groups === 0) return;
    (this.tally[workerId] ??= { accepted: 0, rejected: 0 })[verdict] += groups;
  }

  get totals(): WorkerTally {
    const totals = { accepted: 0, rejected: 0 };
    for (const t of Object.values(this.tally)) {
      totals.accepted += t.accepted;
      totals.rejected += t.rejected;
    }
    return totals;
  }

  snapshot(): Record<string, WorkerTally> {
    return Object.fromEntries(Object.entries(this.tally).map(([worker, t]) => [worker, { ...t }]));
  }
}

/** The most settlements remembered (persisted): far more than can be awaiting removal from the stream. */
const MAX_REMEMBERED = 32_768;

export const emptyLearnerState = (): LearnerState => ({
  v: WIRE_VERSION,
  issuedSeq: 0,
  stepIndex: 0,
  stepFirstSeq: 1,
  stepLastSeq: 0,
  stepsCommitted: 0,
  counts: { accepted: 0, offPolicy: 0, stale: 0, rejected: 0, leftOver: 0, rejectedByReason: {} },
  workers: {},
  acked: [],
  termed: [],
});

/** The step a restarted learner finds trained but not counted: its caller commits it (with the trainer's exclusions). */
export interface TrainedStep {
  stepIndex: number;
  policyVersion: number;
}

export class Settlement {
  readonly ledger: Ledger;
  /** Stream sequence → how it was settled, oldest first (the persisted acked/termed, as one map). */
  private readonly settled = new Map<number, Settled>();

  constructor(
    private readonly state: LearnerState,
    private readonly persist: (state: LearnerState) => Promise<void>,
  ) {
    this.ledger = new Ledger(state.workers);
    for (const seq of state.acked) this.settled.set(seq, 'ack');
    for (const seq of state.termed) this.settled.set(seq, 'term');
  }

  get counts(): Readonly<LearnerCounts> {
    return this.state.counts;
  }

  get tasks(): Readonly<TaskState> {
    return this.state;
  }

  get stepsCommitted(): number {
    return this.state.stepsCommitted;
  }

  /** How this learner (or one before it) settled message `seq`; undefined: never counted. */
  settledAs(seq: number): Settled | undefined {
    return this.settled.get(seq);
  }

  reserveTasks(count: number): { firstSeq: number; lastSeq: number } {
    const firstSeq = this.state.issuedSeq + 1;
    this.state.issuedSeq += count;
    return { firstSeq, lastSeq: this.state.issuedSeq };
  }

  startStep(step: { stepIndex: number; firstSeq: number; lastSeq: number }): void {
    Object.assign(this.state, {
      stepIndex: step.stepIndex,
      stepFirstSeq: step.firstSeq,
      stepLastSeq: step.lastSeq,
      issuedSeq: Math.max(this.state.issuedSeq, step.lastSeq),
    });
  }

  countStale(seq: number): void {
    this.state.counts.stale++;
    this.remember(seq, 'term');
  }

  /** `workerId`: the worker whose signed group it was (the ledger's); none for a group it did not send. */
  countRejected(seq: number, reason: RejectReason, workerId?: string): void {
    this.tallyRejected(reason, workerId);
    this.remember(seq, 'term');
  }

  /** End of run: a group published and never used. */
  countLeftOver(seq: number): void {
    this.state.counts.leftOver++;
    this.remember(seq, 'term');
  }

  /** The batch collected for a step, before it is trained on. */
  recordBatch(batch: BatchRecord): void {
    this.state.pending = batch;
  }

  /**
   * The pending batch was trained on: its groups count as accepted (of them, the older versions' as off-policy)
   * against their workers, except `excluded` (indexes into the batch), which the trainer rejected.
   */
  commit(stepIndex: number, excluded: ReadonlyMap<number, RejectReason>): void {
    const batch = this.state.pending;
    if (batch?.stepIndex !== stepIndex) throw new Error(`commit of step ${stepIndex}, but the batch in training is ${batch ? `step ${batch.stepIndex}` : 'none'}`);
    for (const [i, g] of batch.groups.entries()) {
      const reason = excluded.get(i);
      if (reason) this.tallyRejected(reason, g.worker);
      else {
        this.state.counts.accepted++;
        if (g.version < batch.policyVersion) this.state.counts.offPolicy++;
        this.ledger.record(g.worker, 'accepted');
      }
      this.remember(g.seq, 'ack');
    }
    delete this.state.pending;
    this.state.stepsCommitted = stepIndex;
  }

  /**
   * After a restart, with the trainer at `stepsDone`: a batch trained on but not counted is returned for the caller
   * to commit; one never trained on is dropped (its groups come back and are judged again).
   */
  resume(stepsDone: number): TrainedStep | undefined {
    const batch = this.state.pending;
    if (batch && batch.stepIndex > stepsDone) delete this.state.pending;
    // A trainer behind the counts (its newest policy file lost): the steps after it are made again.
    this.state.stepsCommitted = Math.min(this.state.stepsCommitted, stepsDone);
    const trained = this.state.pending;
    return trained ? { stepIndex: trained.stepIndex, policyVersion: trained.policyVersion } : undefined;
  }

  /** Task sequence numbers of the batch in training (never used again). */
  pendingTaskSeqs(): number[] {
    return this.state.pending?.groups.map((g) => g.taskSeq) ?? [];
  }

  /** Forgets the settlements whose messages the stream no longer holds (they cannot come back). */
  forgetRemoved(inStream: (seq: number) => boolean): void {
    for (const seq of this.settled.keys()) if (!inStream(seq)) this.settled.delete(seq);
  }

  /** Writes the state; its acks and terms may be sent once this returns. */
  save(): Promise<void> {
    this.state.acked = [];
    this.state.termed = [];
    for (const [seq, how] of this.settled) (how === 'ack' ? this.state.acked : this.state.termed).push(seq);
    return this.persist(this.state);
  }

  private tallyRejected(reason: RejectReason, workerId: string | undefined): void {
    const counts = this.state.counts;
    counts.rejected++;
    counts.rejectedByReason[reason] = (counts.rejectedByReason[reason] ?? 0) + 1;
    if (workerId !== undefined) this.ledger.record(workerId, 'rejected');
  }

  private remember(seq: number, how: Settled): void {
    this.settled.delete(seq); // re-inserted as the newest
    this.settled.set(seq, how);
    if (this.settled.size > MAX_REMEMBERED) this.settled.delete(this.settled.keys().next().value!);
  }
}
