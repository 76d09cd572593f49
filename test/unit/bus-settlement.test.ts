// The settlement without NATS: every group ends in exactly one count, the ledger moves with the counts, and a
// restart (a new Settlement from the saved state) resumes both exactly.
import type { BatchRecord, LearnerState } from '../../bus/messages.js';
import { Settlement, emptyLearnerState } from '../../bus/settlement.js';

/** A settlement whose saves land in `saved` (as the control KV would hold them), and a restart from there. */
function persisted() {
  let saved: LearnerState | undefined;
  const persist = async (state: LearnerState) => void (saved = structuredClone(state));
  return {
    settlement: new Settlement(emptyLearnerState(), persist),
    restart: () => new Settlement(structuredClone(saved!), persist),
  };
}

const batch = (stepIndex: number, policyVersion: number, groups: Array<[seq: number, worker: string, version: number]>): BatchRecord => ({
  stepIndex, policyVersion, groups: groups.map(([seq, worker, version]) => ({ seq, taskSeq: seq, worker, version })),
});

describe('Settlement', () => {
  it('counts a committed batch as accepted (older versions off-policy), its exclusions as rejected, the ledger beside', () => {
    const { settlement } = persisted();
    settlement.recordBatch(batch(3, 2, [[10, 'a', 2], [11, 'a', 1], [12, 'b', 2], [13, 'b', 1]]));
    settlement.commit(3, new Map([[3, 'LogprobMismatch']]));
    expect(settlement.counts).toMatchObject({ accepted: 3, offPolicy: 1, rejected: 1, rejectedByReason: { LogprobMismatch: 1 } });
    expect(settlement.ledger.snapshot()).toEqual({ a: { accepted: 2, rejected: 0 }, b: { accepted: 1, rejected: 1 } });
    expect(settlement.ledger.totals.accepted).toBe(settlement.counts.accepted);
    expect(settlement.stepsCommitted).toBe(3);
    expect([10, 11, 12, 13].map((seq) => settlement.settledAs(seq))).toEqual(['ack', 'ack', 'ack', 'ack']);
  });

  it.each([
    ['stale', (s: Settlement) => s.countStale(7), { stale: 1, rejected: 0, leftOver: 0 }, {}],
    ['rejected, signed by its worker', (s: Settlement) => s.countRejected(7, 'Copied', 'c'), { stale: 0, rejected: 1, leftOver: 0 }, { c: { accepted: 0, rejected: 1 } }],
    ['rejected, not its worker\'s', (s: Settlement) => s.countRejected(7, 'BadSignature'), { stale: 0, rejected: 1, leftOver: 0 }, {}],
    ['left over', (s: Settlement) => s.countLeftOver(7), { stale: 0, rejected: 0, leftOver: 1 }, {}],
  ])('a group counted %s is termed, remembered, and survives a restart', async (_, count, counts, ledger) => {
    const { settlement, restart } = persisted();
    count(settlement);
    await settlement.save();
    const restarted = restart();
    expect(restarted.counts).toMatchObject(counts);
    expect(restarted.ledger.snapshot()).toEqual(ledger);
    expect(restarted.settledAs(7)).toBe('term'); // met again: settled without a second count
  });

  it('refuses to commit a step other than the batch in training', () => {
    const { settlement } = persisted();
    expect(() => settlement.commit(1, new Map())).toThrow(/batch in training is none/);
    settlement.recordBatch(batch(2, 1, [[5, 'a', 1]]));
    expect(() => settlement.commit(3, new Map())).toThrow(/step 2/);
  });

  it('after a restart, hands back the batch the trainer trained on but nobody counted, to be committed once', async () => {
    const { settlement, restart } = persisted();
    settlement.recordBatch(batch(1, 0, [[1, 'a', 0], [2, 'b', 0]]));
    await settlement.save();
    const restarted = restart();
    expect(restarted.resume(1)).toEqual({ stepIndex: 1, policyVersion: 0 });
    expect(restarted.pendingTaskSeqs()).toEqual([1, 2]);
    restarted.commit(1, new Map());
    expect(restarted.counts.accepted).toBe(2);
    expect(restarted.ledger.totals.accepted).toBe(2);
  });

  it('after a restart, drops the batch the trainer never trained on (its groups come back, judged again)', async () => {
    const { settlement, restart } = persisted();
    settlement.recordBatch(batch(1, 0, [[1, 'a', 0]]));
    await settlement.save();
    const restarted = restart();
    expect(restarted.resume(0)).toBeUndefined();
    expect(restarted.pendingTaskSeqs()).toEqual([]);
    expect(restarted.settledAs(1)).toBeUndefined();
    expect(restarted.counts.accepted).toBe(0);
  });

  it('forgets only the settlements whose messages the stream no longer holds', async () => {
    const { settlement, restart } = persisted();
    for (const seq of [3, 4, 5]) settlement.countStale(seq);
    settlement.forgetRemoved((seq) => seq === 4);
    await settlement.save();
    expect([3, 4, 5].map((seq) => restart().settledAs(seq))).toEqual([undefined, 'term', undefined]);
  });

  it('reserves task numbers and records the step\'s own range, persisted', async () => {
    const { settlement, restart } = persisted();
    expect(settlement.reserveTasks(4)).toEqual({ firstSeq: 1, lastSeq: 4 });
    settlement.startStep({ stepIndex: 2, firstSeq: 5, lastSeq: 8 });
    await settlement.save();
    expect(restart().tasks).toMatchObject({ issuedSeq: 8, stepIndex: 2, stepFirstSeq: 5, stepLastSeq: 8 });
  });
});
