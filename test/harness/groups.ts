// Synthetic trajectory groups and bus set-up for tests and benchmarks (no engine involved).
import type { NatsConnection } from '@nats-io/transport-node';
import { taskIdOf, type Task, type TrajectoryGroup } from '../../bus/index.js';

export function syntheticGroup(options: {
  job: string;
  taskSeq: number;
  policyVersion: number;
  workerId?: string;
  groupSize?: number;
  tokensPerCompletion?: number;
  reward?: number;
}): TrajectoryGroup {
  const groupSize = options.groupSize ?? 4;
  const tokens = options.tokensPerCompletion ?? 8;
  return {
    job: options.job,
    taskId: taskIdOf(options.taskSeq),
    taskSeq: options.taskSeq,
    policyVersion: options.policyVersion,
    policyDigest: `sha256:${'0'.repeat(64)}`,
    workerId: options.workerId ?? 'w0',
    pool: 'test',
    graderId: 'test',
    promptTokenIds: Int32Array.from({ length: 6 }, (_, i) => i + 3),
    completions: Array.from({ length: groupSize }, (_, c) => ({
      // The first tokens spell the task's number: two tasks' groups differ, as sampled ones do (the learner takes
      // an unlikely group seen twice from two workers for a copy).
      tokenIds: Int32Array.from({ length: tokens }, (_, i) => (i < 3 ? Math.floor(options.taskSeq / 40 ** i) % 40 : (i * 7 + c) % 40) + 3),
      logprobs: Float32Array.from({ length: tokens }, (_, i) => -0.1 * ((i + c) % 5)),
      reward: options.reward ?? c / groupSize,
      text: 'x'.repeat(Math.min(tokens, 16)),
      finishReason: 'stop',
    })),
    timings: { generateMs: 1, scoreMs: 0 },
  };
}

/** Payload bytes of a group with the given shape, to size benchmark messages. */
export function tokensForBytes(bytes: number, groupSize: number): number {
  return Math.max(1, Math.floor((bytes - 600) / (8 * groupSize)));
}

/** A rollout worker that answers every task it claims with a synthetic group at `versionOf(task)`. */
export async function runSyntheticWorker(
  bus: import('../../bus/index.js').WorkerBus,
  job: string,
  signal: AbortSignal,
  options: {
    versionOf?: (task: Task) => number;
    groupSize?: number;
    tokens?: number;
    delayMs?: number;
    /** Tasks this worker fails every time (gives back, as on an engine error): poison. */
    fails?: (task: Task) => boolean;
  } = {},
): Promise<number> {
  let published = 0;
  while (!signal.aborted) {
    const claimed = await bus.claim(1000).catch(async () => {
      await new Promise((r) => setTimeout(r, 100)); // server away: wait, don't spin
      return undefined;
    });
    if (!claimed) continue;
    if (options.fails?.(claimed.task)) {
      claimed.release();
      continue;
    }
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
    const group = syntheticGroup({
      job,
      taskSeq: claimed.task.seq,
      policyVersion: options.versionOf ? options.versionOf(claimed.task) : claimed.task.policyVersion,
      workerId: bus.workerId,
      ...(options.groupSize ? { groupSize: options.groupSize } : {}),
      ...(options.tokens ? { tokensPerCompletion: options.tokens } : {}),
    });
    try {
      await bus.publish(group, signal);
      claimed.done();
      published++;
    } catch {
      claimed.release();
    }
  }
  return published;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export type { NatsConnection };
