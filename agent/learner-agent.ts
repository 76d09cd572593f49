// The learner agent: assembles each step's batch under the job's sync mode, verifies every group, hands the
// batch to the trainer, publishes the new policy, writes progress to the job's KV, and resumes after a
// restart from the trainer's checkpoint and the bus's durable state.
import type { Logger } from 'pino';
import type { LearnerAgentConfig } from '../api/index.js';
import { BusError, LearnerBus, LearnerLease, connectBus, jobNames, type Batch, type LearnerProgress, type RejectReason, type TrajectoryGroup } from '../bus/index.js';
import { EnvironmentClient, EnvironmentUnusable, type EnvironmentInfo } from './environment-client.js';
import { HttpError } from './http.js';
import type { AgentMetrics } from './metrics.js';
import { TrainerClient, type TrainGroup, type TrainResult, type TrainerState } from './trainer-client.js';
import { groupVerifier } from './verifier.js';

/** The built-in tiny model's vocabulary (PAD, BOS, EOS + 45 characters); HF vocabularies fit 2^18. */
const vocabSizeOf = (model: string) => (model === 'tiny' ? 48 : 1 << 18);

export async function runLearnerAgent(config: LearnerAgentConfig, log: Logger, metrics: AgentMetrics, signal: AbortSignal) {
  const spec = config.jobSpec;
  const job = { namespace: config.namespace, name: config.job };
  const trainer = new TrainerClient(config.trainerUrl);
  // A learner of several ranks: the trainers of ranks > 0 follow rank 0's, and only rank 0's agent drives.
  const { rank = 0 } = await untilTrainerAnswers(() => trainer.state(), log, signal);
  if (rank !== 0) {
    log.info({ rank }, 'this trainer follows rank 0; rank 0\'s learner agent drives the job');
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return;
  }
  const nc = await connectBus({ servers: config.natsServers, ...(config.natsCreds ? { credsFile: config.natsCreds } : {}), inboxPrefix: jobNames(job).inboxPrefix, name: config.workerId });
  // Exactly one learner agent drives the job: a second one stands by here until the holder is gone.
  let lease: LearnerLease;
  try {
    lease = await LearnerLease.acquire(nc, job, { holder: config.workerId, log, signal });
  } catch (err) {
    await nc.drain().catch(() => undefined);
    if (signal.aborted) return; // stopped while standing by
    throw err;
  }
  // The learner's own environment server: it re-scores every group and gives the prompts the trainer checks.
  const environment = new EnvironmentClient(config.environmentUrl, log, signal);
  const { batchSize, maxSteps } = spec.algorithm;
  // The ledger: verdicts per worker identity (the bus's own rejections of signed groups, the verifier's, the trainer's).
  const ledger: Record<string, { accepted: number; rejected: number }> = {};
  const bus = await LearnerBus.open(nc, job, {
    mode: spec.sync.mode,
    batchSize,
    maxStaleness: spec.sync.maxStaleness,
    taskWindow: spec.sync.taskWindow ?? 2 * batchSize,
    vocabSize: vocabSizeOf(spec.model.name),
    maxGroupBytes: 8 * 1024 * 1024,
    onRejected: (workerId) => (ledger[workerId] ??= { accepted: 0, rejected: 0 }).rejected++,
    taskPayload: async (seq) => ({ prompt: (await environment.task(seq)).prompt }),
    log,
  });
  // Its records are written only while it holds the lease; losing it stops the bus at once.
  bus.control.fence(lease);
  lease.lost.addEventListener('abort', () => bus.close(), { once: true });
  let environmentInfo: EnvironmentInfo;
  try {
    environmentInfo = await environment.ready();
  } catch (err) {
    if (!(err instanceof EnvironmentUnusable)) throw err;
    // No restart cures a bad environment: the job fails saying why, and this agent waits to be stopped
    // rather than exit into a restart loop.
    await failForEnvironment(bus, maxSteps, err);
    log.error({ reason: err.reason }, `environment unusable: ${err.message}`);
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    bus.close();
    await lease.release();
    await nc.drain().catch(() => undefined);
    return;
  }

  // Digests of the versions a group may still claim (the staleness bound and a margin): bounded by the bound.
  const digests = new Map<number, string>();
  const keepDigests = spec.sync.maxStaleness + 2;
  const digestOf = async (version: number) => {
    if (!digests.has(version)) {
      const record = await bus.control.policyAt(version);
      if (record) digests.set(version, record.digest);
    }
    return digests.get(version);
  };
  const verify = groupVerifier({ environment, verifierId: environmentInfo.verifierId, groupSize: spec.algorithm.groupSize, rewardTolerance: spec.verification.rewardTolerance, digestOf });
  const verifyAndRecord: typeof verify = async (group) => {
    const verdict = await verify(group);
    const entry = (ledger[group.workerId] ??= { accepted: 0, rejected: 0 });
    if (verdict.ok) entry.accepted++;
    else entry.rejected++;
    return verdict;
  };

  let trainerState = await untilTrainerAnswers(() => trainer.state(), log, signal);
  await bus.resume(trainerState.step);
  const current = await bus.control.policy();
  if (current?.version !== trainerState.version) await publish(trainerState);
  else digests.set(current.version, current.digest);

  let lastReward: number | null = (await bus.control.progress())?.reward ?? null;
  const writeProgress = async (state: LearnerProgress['state'], message?: string, published?: number) => {
    const counts = bus.counts;
    const progress: LearnerProgress = {
      v: 1,
      step: trainerState.step,
      maxSteps,
      state,
      policyVersion: trainerState.version,
      reward: lastReward,
      groups: {
        accepted: counts.accepted,
        offPolicy: counts.offPolicy ?? 0,
        stale: counts.stale,
        rejected: counts.rejected,
        published: published ?? (await bus.published()),
        deadLetteredTasks: await bus.deadLettered(),
      },
      rejectedByReason: { ...counts.rejectedByReason },
      workers: ledger,
      updatedAt: new Date().toISOString(),
      ...(message ? { message } : {}),
    };
    await bus.control.putProgress(progress);
    metrics.step.set(progress.step);
    for (const outcome of ['accepted', 'stale', 'rejected'] as const) metrics.groups.set({ outcome }, counts[outcome]);
  };
  await writeProgress('Running');
  log.info({ step: trainerState.step, version: trainerState.version, mode: spec.sync.mode }, 'learner agent ready');

  async function publish(state: TrainerState): Promise<void> {
    // Streamed from the trainer's file, and announced only if its bytes hash to the trainer's digest.
    const record = await bus.publishPolicy(state.version, { path: state.weights_path, digest: state.digest });
    digests.set(state.version, record.digest);
    digests.delete(state.version - keepDigests);
  }

  try {
    while (trainerState.step < maxSteps && !signal.aborted) {
      const step = trainerState.step + 1; // the bus counts steps from 1; the trainer's train_step from 0
      const started = performance.now();
      const batch = await bus.nextBatch(step, trainerState.version, verifyAndRecord);
      const collectedMs = performance.now() - started;
      lease.assertHeld(); // only the holder trains
      const trainGroups = await toTrainGroups(batch, environment);
      const result = await untilTrainerAnswers(() => trainer.trainStep(step - 1, trainGroups), log, signal);
      const excluded = result.rejected.map((r) => ({ index: r.index, reason: trainerReason(r.reason) }));
      for (const { index, reason } of excluded) {
        const group = batch.groups[index];
        if (!group) continue;
        const entry = (ledger[group.workerId] ??= { accepted: 0, rejected: 0 });
        entry.accepted--; // the learner's own checks had passed it
        entry.rejected++;
        log.warn({ task: group.taskId, worker: group.workerId, reason }, 'group excluded by the trainer');
      }
      // The trainer answers with the index of the step it did; its state counts steps done.
      trainerState = { step, version: result.version, weights_path: result.weights_path, digest: result.digest };
      await publish(trainerState);
      await bus.commit(batch, excluded);
      // The reward of what was trained on: a forged group the trainer excluded must not lift the curve.
      lastReward = meanReward(batch.groups.filter((_, i) => !excluded.some((e) => e.index === i))) ?? lastReward;
      if (lastReward !== null) metrics.reward.set(lastReward);
      await writeProgress('Running');
      log.info(
        { step, version: result.version, reward: lastReward, collectMs: Math.round(collectedMs), trainMs: Math.round(performance.now() - started - collectedMs), loss: metricOf(result, 'loss'), offPolicy: metricOf(result, 'groups_offpolicy'), isWeight: metricOf(result, 'is_weight_mean'), excluded: result.rejected.length },
        'step done',
      );
    }
    if (trainerState.step >= maxSteps) {
      const published = await bus.drain();
      await writeProgress('Succeeded', `${maxSteps} steps done`, published);
      log.info({ counts: bus.counts, published }, 'run finished');
    }
  } catch (err) {
    // Only what no wait can cure gets here (the bus and the trainer client retry the rest): the job fails, saying why.
    // A learner that lost the lease writes nothing more (the server would refuse it) and exits with that reason.
    if (lease.lost.aborted) throw new BusError('LeaseLost', `learner ${config.workerId} lost the lease: ${String(lease.lost.reason)}`);
    if (!signal.aborted) {
      await writeProgress('Failed', failureOf(err)).catch(() => undefined);
      throw err;
    }
  } finally {
    bus.close();
    await lease.release(); // a standby takes over at once, not after the lease's ttl
    await nc.drain().catch(() => undefined);
  }
}

/** The job's Failed record for an environment no restart can cure, its reason first (what the operator shows). */
async function failForEnvironment(bus: LearnerBus, maxSteps: number, err: EnvironmentUnusable): Promise<void> {
  const previous = await bus.control.progress();
  const empty: LearnerProgress = {
    v: 1, step: 0, maxSteps, state: 'Starting', policyVersion: 0, reward: null,
    groups: { accepted: 0, stale: 0, rejected: 0, published: 0 }, rejectedByReason: {}, updatedAt: '',
  };
  await bus.control.putProgress({ ...(previous ?? empty), state: 'Failed', message: `${err.reason}: ${err.message}`, updatedAt: new Date().toISOString() });
}

/** "<Reason>: <message>" for the Failed record: the machine reason first, as a condition would carry it. */
function failureOf(err: unknown): string {
  const reason = (err as { reason?: unknown }).reason;
  const message = err instanceof Error ? err.message : String(err);
  return `${typeof reason === 'string' ? reason : err instanceof Error ? err.name : 'Error'}: ${message}`;
}

/** The batch for the trainer, with the task's prompt and the scored texts, so it can check the tokens say the same. */
async function toTrainGroups(batch: Batch, environment: EnvironmentClient): Promise<TrainGroup[]> {
  const prompts = await Promise.all(batch.groups.map(async (g) => (await environment.task(g.taskSeq)).prompt));
  return batch.groups.map((g, i) => ({
    policy_version: g.policyVersion,
    prompt: prompts[i]!,
    prompt_token_ids: Array.from(g.promptTokenIds),
    completions: g.completions.map((c) => ({ token_ids: Array.from(c.tokenIds), logprobs: Array.from(c.logprobs), reward: c.reward, text: c.text })),
  }));
}

const trainerReasons = new Set<string>(['LogprobMismatch', 'InvalidTokens', 'InvalidLogprobs', 'PromptMismatch', 'TextMismatch', 'FutureVersion', 'UnknownVersion']);
/** The trainer's rejection reasons are the bus's words for the same findings (an unknown one is Malformed). */
const trainerReason = (reason: string): RejectReason => (trainerReasons.has(reason) ? (reason as RejectReason) : 'Malformed');

/** Mean reward of the groups' completions; undefined for none. */
const meanReward = (groups: TrajectoryGroup[]) => {
  const rewards = groups.flatMap((g) => g.completions.map((c) => c.reward));
  return rewards.length > 0 ? rewards.reduce((a, b) => a + b, 0) / rewards.length : undefined;
};
const metricOf = (result: TrainResult, name: string) => result.metrics[name];

/** A killed trainer is restarted by its supervisor (Kubernetes, or `rlkube run`): wait for it, don't fail. */
async function untilTrainerAnswers<T>(call: () => Promise<T>, log: Logger, signal: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const unreachable = err instanceof HttpError && (err.reason === 'Unreachable' || err.reason === 'Timeout');
      if (!unreachable || signal.aborted) throw err;
      if (attempt % 20 === 0) log.warn({ err: err.message }, 'trainer unreachable; retrying');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
