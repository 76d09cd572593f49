// The group check of the learner bus: one message in, one verdict out (accepted, stale, or rejected with a
// reason). Pure given its inputs — the registered keys, the copy detector, the tasks used, the task state — so
// it is tested without NATS; counting and settling the message is the caller's (bus/settlement.ts).
import type { CopyDetector } from './copies.js';
import { BusError, type RejectReason } from './errors.js';
import { digestOfMessage } from './signing.js';
import type { TaskState } from './sync-policy.js';
import { decodeGroup, type DecodeLimits, type TrajectoryGroup } from './trajectory.js';

export type Verdict = { ok: true } | { ok: false; reason: RejectReason; message: string };
/** The caller's own check of a group that passed the bus's (the learner agent's: digests, rewards). */
export type GroupCheck = (group: TrajectoryGroup) => Verdict | Promise<Verdict>;

/**
 * `taskUsedUp`: the group's task gave no usable group for the current step (SequentialPull issues another).
 * `group` of a rejection: present when its signature is its worker's, so it counts against that worker.
 */
export type Judgement =
  | { outcome: 'accepted'; group: TrajectoryGroup }
  | { outcome: 'stale'; group: TrajectoryGroup; taskUsedUp: boolean }
  | { outcome: 'rejected'; reason: RejectReason; group?: TrajectoryGroup; taskUsedUp: boolean; copiedFrom?: string };

export interface SignatureChecker {
  check(workerId: string, digest: Uint8Array, signature: string | undefined): boolean | Promise<boolean>;
}

export interface JudgeInputs {
  keys: SignatureChecker;
  copies: CopyDetector;
  used: UsedTasks;
  /** The learner's task bookkeeping now (a group for a task never issued is UnknownTask). */
  tasks: () => TaskState;
  decodeLimits: DecodeLimits;
  /** Whether an unusable group for this task used up one of the step's tasks (the sync policy's call). */
  usesUpStepTask: (taskSeq: number, tasks: TaskState) => boolean;
}

/** Where the step stands: the version trained from, and the oldest one a group may have to be used. */
export interface JudgeAt {
  version: number;
  oldestUsable: number;
}

const isPromiseLike = <T>(value: T | PromiseLike<T>): value is PromiseLike<T> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

export class GroupJudge {
  constructor(private readonly inputs: JudgeInputs) {}

  /**
   * Synchronous unless the group check returns a promise or the worker's key is not known yet (one await per group
   * adds up on the hot path). `data` may be taken over by the decoded group.
   */
  judge(data: Uint8Array, signature: string | undefined, at: JudgeAt, verify: GroupCheck): Judgement | Promise<Judgement> {
    const digest = digestOfMessage(data); // what the worker signed, before the decoder may move the bytes
    let group: TrajectoryGroup;
    try {
      group = decodeGroup(data, this.inputs.decodeLimits, { takeOver: true });
    } catch (err) {
      return { outcome: 'rejected', reason: err instanceof BusError && isDecodeReason(err.reason) ? err.reason : 'Malformed', taskUsedUp: false };
    }
    // In the stream's order, whatever the key lookups below take: the first publisher of a group is the original.
    const copiedFrom = this.inputs.copies.copiedFrom(group);
    const signed = this.inputs.keys.check(group.workerId, digest, signature);
    if (isPromiseLike(signed)) return Promise.resolve(signed).then((ok) => this.judgeSigned(ok, copiedFrom, group, at, verify));
    return this.judgeSigned(signed, copiedFrom, group, at, verify);
  }

  private judgeSigned(signed: boolean, copiedFrom: string | undefined, group: TrajectoryGroup, at: JudgeAt, verify: GroupCheck): Judgement | Promise<Judgement> {
    // Not counted against the worker the group names: it did not send it.
    if (!signed) return { outcome: 'rejected', reason: 'BadSignature', taskUsedUp: true };
    const { used } = this.inputs;
    const tasks = this.inputs.tasks();
    if (group.taskId !== taskIdOf(group.taskSeq) || group.taskSeq > tasks.issuedSeq) return rejected('UnknownTask', group, false);
    if (used.has(group.taskSeq)) return rejected('Duplicate', group, false);
    if (copiedFrom !== undefined) {
      used.add(group.taskSeq);
      return { ...rejected('Copied', group, true), copiedFrom };
    }
    if (group.policyVersion > at.version) return rejected('FutureVersion', group, false);
    used.add(group.taskSeq);
    if (group.policyVersion < at.oldestUsable) {
      return { outcome: 'stale', group, taskUsedUp: this.inputs.usesUpStepTask(group.taskSeq, tasks) };
    }
    const verdict = verify(group);
    if (isPromiseLike(verdict)) return Promise.resolve(verdict).then((v) => verdictOf(v, group));
    return verdictOf(verdict, group);
  }
}

type Rejected = Extract<Judgement, { outcome: 'rejected' }>;
const rejected = (reason: RejectReason, group: TrajectoryGroup, taskUsedUp: boolean): Rejected => ({ outcome: 'rejected', reason, group, taskUsedUp });

/** The group check's verdict on a group that passed the bus's own checks. */
const verdictOf = (verdict: Verdict, group: TrajectoryGroup): Judgement =>
  verdict.ok ? { outcome: 'accepted', group } : rejected(verdict.reason, group, true);

export const taskIdOf = (seq: number) => `t${seq}`;

/**
 * Task sequence numbers already used, in bounded memory: the newest `capacity` of them, and every number up to
 * the newest one forgotten. A task still unanswered while `capacity` later ones were used (far more than the
 * task window holds) is thereby closed: a group for it, should one ever come, is a Duplicate.
 */
export class UsedTasks {
  private readonly seqs = new Set<number>();
  private forgottenThrough = 0;

  constructor(private readonly capacity: number) {}

  has(seq: number): boolean {
    return seq <= this.forgottenThrough || this.seqs.has(seq);
  }

  add(seq: number): void {
    this.seqs.add(seq);
    if (this.seqs.size <= this.capacity) return;
    const oldest = this.seqs.values().next().value!; // insertion order: the one used longest ago
    this.seqs.delete(oldest);
    this.forgottenThrough = Math.max(this.forgottenThrough, oldest);
  }
}

const decodeReasons = new Set<string>(['Malformed', 'Oversized', 'UnsupportedVersion', 'WrongJob', 'TokenOutOfRange']);
const isDecodeReason = (reason: string): reason is RejectReason => decodeReasons.has(reason);
