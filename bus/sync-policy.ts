// What a sync mode means, in one place: which tasks the learner issues for a step, how it keeps workers busy,
// the oldest policy version a group may have to be used, and what it issues again after a stall. Pure: the
// learner bus asks, then publishes and persists what it is told (unit-tested without NATS).
import type { SyncMode } from '../api/rljob.js';

/** The learner's task bookkeeping (persisted with its state): sequence numbers reserved, and the step's own. */
export interface TaskState {
  /** Highest task sequence number reserved so far. */
  issuedSeq: number;
  /** The step (1-based index) whose SequentialPull tasks occupy [stepFirstSeq, stepLastSeq]. */
  stepIndex: number;
  stepFirstSeq: number;
  stepLastSeq: number;
}

/** What to do as collecting for a step begins. */
export interface StepTasks {
  /** Queued tasks of this version are dropped first (they would only make stale groups). */
  dropQueuedOf?: number;
  /** The step's tasks, [firstSeq, lastSeq], recorded (if new) and published (again: the stream stores each once). */
  step?: { stepIndex: number; firstSeq: number; lastSeq: number };
}

export interface SyncPolicy {
  readonly mode: SyncMode;
  /** The tasks of step `stepIndex`, trained from `version`. */
  issueForStep(stepIndex: number, version: number, tasks: TaskState): StepTasks;
  /** Whether the task window is kept full while collecting (then `topUp` says by how much). */
  readonly keepsWindowFull: boolean;
  /** New tasks the window lacks, given the tasks and groups in flight. */
  topUp(inFlight: number): number;
  /** The oldest policy version a group may have to be used at `version`. */
  oldestUsable(version: number): number;
  /** Nothing arrived for a while: how many tasks to issue again, given the tasks and groups in flight. */
  reissue(inFlight: number): number;
  /** New tasks to issue because `usedUp` tasks gave no usable group (rejected, or stale for this step). */
  replaceUsedUp(usedUp: number): number;
  /** Whether an unusable group for task `taskSeq` used up one of the current step's tasks. */
  usesUpStepTask(taskSeq: number, tasks: TaskState): boolean;
}

export interface SyncPolicyOptions {
  batchSize: number;
  /** AsyncPushPull: a group is used at version v only if its version ≥ v − maxStaleness. */
  maxStaleness: number;
  /** AsyncPushPull: tasks queued + groups waiting, at most. */
  taskWindow: number;
}

/** Every step trains only on groups of the current policy: exactly B tasks per step, tagged with its version. */
export class SequentialPull implements SyncPolicy {
  readonly mode = 'SequentialPull' as const;
  readonly keepsWindowFull = false;

  constructor(private readonly options: Pick<SyncPolicyOptions, 'batchSize'>) {}

  issueForStep(stepIndex: number, version: number, tasks: TaskState): StepTasks {
    if (tasks.stepIndex === stepIndex) {
      // Resumed mid-step: the same tasks again (a restarted learner re-issues what its predecessor reserved).
      return { step: { stepIndex, firstSeq: tasks.stepFirstSeq, lastSeq: tasks.stepLastSeq } };
    }
    const firstSeq = tasks.issuedSeq + 1;
    return {
      ...(version > 0 ? { dropQueuedOf: version - 1 } : {}),
      step: { stepIndex, firstSeq, lastSeq: firstSeq + this.options.batchSize - 1 },
    };
  }

  topUp(): number {
    return 0;
  }

  oldestUsable(version: number): number {
    return version;
  }

  reissue(inFlight: number): number {
    return Math.max(0, this.options.batchSize - inFlight);
  }

  replaceUsedUp(usedUp: number): number {
    return usedUp;
  }

  usesUpStepTask(taskSeq: number, tasks: TaskState): boolean {
    return taskSeq >= tasks.stepFirstSeq;
  }
}

/** Workers generate continuously within a task window; groups up to maxStaleness versions old are used. */
export class AsyncPushPull implements SyncPolicy {
  readonly mode = 'AsyncPushPull' as const;
  readonly keepsWindowFull = true;

  constructor(private readonly options: SyncPolicyOptions) {}

  issueForStep(): StepTasks {
    return {};
  }

  topUp(inFlight: number): number {
    return Math.max(0, this.options.taskWindow - inFlight);
  }

  oldestUsable(version: number): number {
    return version - this.options.maxStaleness;
  }

  reissue(inFlight: number): number {
    return this.topUp(inFlight);
  }

  /** The window's top-up replaces them. */
  replaceUsedUp(): number {
    return 0;
  }

  usesUpStepTask(): boolean {
    return false;
  }
}

export function syncPolicyFor(mode: SyncMode, options: SyncPolicyOptions): SyncPolicy {
  return mode === 'SequentialPull' ? new SequentialPull(options) : new AsyncPushPull(options);
}
