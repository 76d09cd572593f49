// The learner agent: assembles each step's batch under the job's sync mode, verifies every group, hands the
// batch to the trainer, publishes the new policy, counts the step, writes progress to the job's KV, and resumes
// after a restart from the trainer's checkpoint and the bus's durable state. `LearnerAgent` is the step loop
// (its bus, trainer, environment and clock injected); `runLearnerAgent` wires it to the real ones.
import type { Logger } from 'pino';
import { BusLimits, retainedPolicyVersions, type LearnerAgentConfig, type RLJobSpec } from '../api/index.js';
import {
  BusError, LearnerBus, LearnerLease, WIRE_VERSION, connectBus, jobNames,
  type Batch, type ControlStore, type GroupCheck, type LearnerCounts, type LearnerProgress, type Ledger, type PolicyRecord,
  type RejectReason, type TrainedStep, type TrajectoryGroup,
} from '../bus/index.js';
import { EnvironmentClient, EnvironmentUnusable } from './environment-client.js';
import { retry } from '../util/retry.js';
import { HttpError, PEER_BACKOFF, isPeerAway } from './http.js';
import type { AgentMetrics } from './metrics.js';
import { TrainerClient, type TrainGroup, type TrainResult, type TrainerState } from './trainer-client.js';
import { groupCheck } from './group-check.js';

/** What the agent needs of the learner bus (LearnerBus; a fake in the unit tests). */
export interface LearnerAgentBus {
  resume(stepsDone: number): Promise<TrainedStep | undefined>;
  nextBatch(stepIndex: number, policyVersion: number, verify: GroupCheck): Promise<Batch>;
  commit(step: TrainedStep, excluded: ReadonlyArray<{ index: number; reason: RejectReason }>): Promise<void>;
  publishPolicy(version: number, weights: { path: string; digest: string }): Promise<PolicyRecord>;
  drain(): Promise<number>;
  published(): Promise<number>;
  deadLettered(): Promise<number>;
  readonly counts: Readonly<LearnerCounts>;
  readonly ledger: Ledger;
  readonly control: Pick<ControlStore, 'policy' | 'policyAt' | 'progress' | 'putProgress'>;
}

export type LearnerTrainer = Pick<TrainerClient, 'state' | 'trainStep'>;
export type LearnerEnvironment = Pick<EnvironmentClient, 'task' | 'score'>;

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = { now: () => Date.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

export interface LearnerAgentDeps {
  bus: LearnerAgentBus;
  trainer: LearnerTrainer;
  environment: LearnerEnvironment;
  clock: Clock;
  log: Logger;
  metrics: AgentMetrics;
  /** Stops waiting for an unreachable trainer. */
  signal: AbortSignal;
  /** Throws when this agent no longer drives the job (its lease lost): only the holder trains. */
  assertLeader: () => void;
}

export interface LearnerAgentSettings {
  maxSteps: number;
  mode: RLJobSpec['sync']['mode'];
  maxStaleness: number;
  groupSize: number;
  rewardTolerance: number;
  /** The grader the learner's environment server names (every group must name the same). */
  graderId: string;
}

export class LearnerAgent {
  private trainerState!: TrainerState;
  private lastReward: number | null = null;
  /** Digests of the versions a group may still claim (the retention window): bounded by it. */
  private readonly digests = new Map<number, string>();
  private readonly verify: GroupCheck;

  constructor(private readonly deps: LearnerAgentDeps, private readonly settings: LearnerAgentSettings) {
    this.verify = groupCheck({
      environment: deps.environment,
      graderId: settings.graderId,
      groupSize: settings.groupSize,
      rewardTolerance: settings.rewardTolerance,
      digestOf: (version) => this.digestOf(version),
    });
  }

  /** Steps the trainer has done. */
  get stepsDone(): number {
    return this.trainerState.step;
  }

  get finished(): boolean {
    return this.stepsDone >= this.settings.maxSteps;
  }

  /**
   * Picks up where the trainer and the bus left off: the trainer's policy announced if the job's is older, a
   * step trained on but not counted (a crash between train and commit) committed with the trainer's exclusions.
   */
  async resume(): Promise<void> {
    const { bus, log } = this.deps;
    this.trainerState = await this.untilTrainerAnswers(() => this.deps.trainer.state());
    const trained = await bus.resume(this.stepsDone);
    const current = await bus.control.policy();
    if (current?.version !== this.trainerState.version) await this.publishPolicy();
    else this.digests.set(current.version, current.digest);
    if (trained) await this.commit(trained, await this.replayedExclusions(trained));
    this.lastReward = (await bus.control.progress())?.reward ?? null;
    await this.report('Running');
    log.info({ stepsDone: this.stepsDone, version: this.trainerState.version, mode: this.settings.mode }, 'learner agent ready');
  }

  /**
   * One step: collect → train → publish → commit → report. Publishing first gets workers onto the new version
   * at once; committing counts the step's groups and lets them leave the stream; reporting last means progress
   * never shows a step whose counts are not stored. A crash between any two is made good by resume().
   */
  async step(): Promise<void> {
    const stepIndex = this.stepsDone + 1;
    const started = this.deps.clock.now();
    const batch = await this.deps.bus.nextBatch(stepIndex, this.trainerState.version, this.verify);
    const collectMs = this.deps.clock.now() - started;
    this.deps.assertLeader();
    const result = await this.train(batch);
    const excluded = this.exclusions(result, batch.groups);
    await this.publishPolicy();
    await this.commit(batch, excluded);
    // The reward of what was trained on: a forged group the trainer excluded must not lift the curve.
    this.lastReward = meanReward(batch.groups.filter((_, i) => !excluded.some((e) => e.index === i))) ?? this.lastReward;
    if (this.lastReward !== null) this.deps.metrics.reward.set(this.lastReward);
    await this.report('Running');
    this.deps.log.info(
      { stepIndex, version: result.version, reward: this.lastReward, collectMs, trainMs: this.deps.clock.now() - started - collectMs, loss: result.metrics.loss, offPolicy: result.metrics.groups_offpolicy, isWeight: result.metrics.is_weight_mean, excluded: excluded.length },
      'step done',
    );
  }

  /** All steps done: what is left on the bus is counted, and the job Succeeded. */
  async finish(): Promise<void> {
    const published = await this.deps.bus.drain();
    await this.report('Succeeded', `${this.settings.maxSteps} steps done`, published);
    this.deps.log.info({ counts: this.deps.bus.counts, published }, 'run finished');
  }

  /** What no wait can cure: the job fails, its reason first. A record that cannot be written is logged, not lost. */
  async fail(err: unknown): Promise<void> {
    const message = failureOf(err);
    await this.report('Failed', message).catch((writeErr: unknown) => this.deps.log.warn({ err: String(writeErr), failure: message }, 'Failed progress record not written'));
  }

  /** The trainer's step on the batch (retried while the trainer restarts: the step is idempotent). */
  private async train(batch: Batch): Promise<TrainResult> {
    const groups = await this.toTrainGroups(batch);
    // The trainer numbers its steps from 0 (its steps done before this one).
    const result = await this.untilTrainerAnswers(() => this.deps.trainer.trainStep(batch.stepIndex - 1, groups));
    this.trainerState = { step: batch.stepIndex, version: result.version, weights_path: result.weights_path, digest: result.digest };
    return result;
  }

  /** Streamed from the trainer's file, and announced only if its bytes hash to the trainer's digest. */
  private async publishPolicy(): Promise<void> {
    const { version, weights_path, digest } = this.trainerState;
    const record = await this.deps.bus.publishPolicy(version, { path: weights_path, digest });
    this.digests.set(version, record.digest);
    this.digests.delete(version - retainedPolicyVersions(this.settings.maxStaleness));
  }

  private commit(step: TrainedStep, excluded: ReadonlyArray<{ index: number; reason: RejectReason }>): Promise<void> {
    return this.deps.bus.commit(step, excluded);
  }

  /** The exclusions of a step trained before a restart: the trainer answers a step it did with its stored result. */
  private async replayedExclusions(step: TrainedStep): Promise<Array<{ index: number; reason: RejectReason }>> {
    try {
      const result = await this.untilTrainerAnswers(() => this.deps.trainer.trainStep(step.stepIndex - 1, []));
      return result.rejected.map((r) => ({ index: r.index, reason: trainerReason(r.reason) }));
    } catch (err) {
      if (!(err instanceof HttpError && err.reason === 'StepUnavailable')) throw err;
      this.deps.log.warn({ stepIndex: step.stepIndex, err: err.message }, 'trainer no longer keeps the step\'s result: its groups count as accepted');
      return [];
    }
  }

  private exclusions(result: TrainResult, groups: TrajectoryGroup[]): Array<{ index: number; reason: RejectReason }> {
    return result.rejected.flatMap((r) => {
      const group = groups[r.index];
      if (!group) return [];
      const reason = trainerReason(r.reason);
      this.deps.log.warn({ task: group.taskId, worker: group.workerId, reason }, 'group excluded by the trainer');
      return [{ index: r.index, reason }];
    });
  }

  private async report(state: LearnerProgress['state'], message?: string, published?: number): Promise<void> {
    const { bus, metrics } = this.deps;
    const counts = bus.counts;
    const progress: LearnerProgress = {
      v: WIRE_VERSION,
      step: this.stepsDone,
      maxSteps: this.settings.maxSteps,
      state,
      policyVersion: this.trainerState.version,
      reward: this.lastReward,
      groups: {
        accepted: counts.accepted,
        offPolicy: counts.offPolicy,
        stale: counts.stale,
        rejected: counts.rejected,
        leftOver: counts.leftOver,
        published: published ?? (await bus.published()),
        deadLetteredTasks: await bus.deadLettered(),
      },
      rejectedByReason: { ...counts.rejectedByReason },
      workers: bus.ledger.snapshot(),
      updatedAt: new Date(this.deps.clock.now()).toISOString(),
      ...(message ? { message } : {}),
    };
    await bus.control.putProgress(progress);
    metrics.step.set(progress.step);
    for (const outcome of ['accepted', 'stale', 'rejected', 'leftOver'] as const) metrics.groups.set({ outcome }, counts[outcome]);
  }

  private async digestOf(version: number): Promise<string | undefined> {
    if (!this.digests.has(version)) {
      const record = await this.deps.bus.control.policyAt(version);
      if (record) this.digests.set(version, record.digest);
    }
    return this.digests.get(version);
  }

  /** The batch for the trainer, with the task's prompt and the scored texts, so it can check the tokens say the same. */
  private async toTrainGroups(batch: Batch): Promise<TrainGroup[]> {
    const prompts = await Promise.all(batch.groups.map(async (g) => (await this.deps.environment.task(g.taskSeq)).prompt));
    return batch.groups.map((g, i) => ({
      policy_version: g.policyVersion,
      prompt: prompts[i]!,
      prompt_token_ids: Array.from(g.promptTokenIds),
      completions: g.completions.map((c) => ({ token_ids: Array.from(c.tokenIds), logprobs: Array.from(c.logprobs), reward: c.reward, text: c.text })),
    }));
  }

  private untilTrainerAnswers<T>(call: () => Promise<T>): Promise<T> {
    return untilTrainerAnswers(call, this.deps);
  }
}

/** Runs the learner agent of a job's learner pod (or `rlkube run`) until the job is done or the signal stops it. */
export async function runLearnerAgent(config: LearnerAgentConfig, log: Logger, metrics: AgentMetrics, signal: AbortSignal) {
  const spec = config.jobSpec;
  const job = { namespace: config.namespace, name: config.job };
  const trainer = new TrainerClient(config.trainerUrl);
  const clock = systemClock;
  // A learner of several ranks: the trainers of ranks > 0 follow rank 0's, and only rank 0's agent drives.
  const { rank = 0, vocab_size: vocabSize } = await untilTrainerAnswers(() => trainer.state(), { log, signal, clock });
  if (rank !== 0) {
    log.info({ rank }, 'this trainer follows rank 0; rank 0\'s learner agent drives the job');
    await untilAborted(signal);
    return;
  }
  if (vocabSize === undefined) throw new TrainerTooOld('the trainer\'s /v1/state reports no vocab_size: a trainer image older than this agent');
  const nc = await connectBus({ servers: config.natsServers, ...(config.natsCreds ? { credsFile: config.natsCreds } : {}), inboxPrefix: jobNames(job).inboxPrefix, name: config.workerId });
  const closeConnection = () => nc.drain().catch((err: unknown) => log.debug({ err: String(err) }, 'bus connection already closed'));
  // Exactly one learner agent drives the job: a second one stands by here until the holder is gone.
  let lease: LearnerLease;
  try {
    lease = await LearnerLease.acquire(nc, job, { holder: config.workerId, log, signal });
  } catch (err) {
    await closeConnection();
    if (signal.aborted) return; // stopped while standing by
    throw err;
  }
  // The learner's own environment server: it re-scores every group and gives the prompts the trainer checks.
  const environment = new EnvironmentClient(config.environmentUrl, log, signal);
  const { batchSize, maxSteps } = spec.algorithm;
  const bus = await LearnerBus.open(nc, job, {
    mode: spec.sync.mode,
    batchSize,
    maxStaleness: spec.sync.maxStaleness,
    taskWindow: spec.sync.taskWindow ?? 2 * batchSize,
    vocabSize,
    maxGroupBytes: BusLimits.maxGroupBytes,
    taskPayload: async (seq) => ({ prompt: (await environment.task(seq)).prompt }),
    log,
  });
  // Its records are written only while it holds the lease; losing it stops the bus at once.
  bus.control.fence(lease);
  lease.lost.addEventListener('abort', () => bus.close(), { once: true });
  const stop = async () => {
    bus.close();
    await lease.release(); // a standby takes over at once, not after the lease's ttl
    await closeConnection();
  };
  let graderId: string;
  try {
    graderId = (await environment.ready()).graderId;
  } catch (err) {
    if (!(err instanceof EnvironmentUnusable)) throw err;
    // No restart cures a bad environment: the job fails saying why, and this agent waits to be stopped
    // rather than exit into a restart loop.
    await failForEnvironment(bus, maxSteps, err, clock);
    log.error({ reason: err.reason }, `environment unusable: ${err.message}`);
    await untilAborted(signal);
    await stop();
    return;
  }
  const agent = new LearnerAgent(
    { bus, trainer, environment, clock, log, metrics, signal, assertLeader: () => lease.assertHeld() },
    { maxSteps, mode: spec.sync.mode, maxStaleness: spec.sync.maxStaleness, groupSize: spec.algorithm.groupSize, rewardTolerance: spec.verification.rewardTolerance, graderId },
  );
  try {
    await agent.resume();
    while (!agent.finished && !signal.aborted) await agent.step();
    if (agent.finished) await agent.finish();
  } catch (err) {
    // Only what no wait can cure gets here (the bus and the trainer client retry the rest): the job fails, saying why.
    // A learner that lost the lease writes nothing more (the server would refuse it) and exits with that reason.
    if (lease.lost.aborted) throw new BusError('LeaseLost', `learner ${config.workerId} lost the lease: ${String(lease.lost.reason)}`);
    if (!signal.aborted) {
      await agent.fail(err);
      throw err;
    }
  } finally {
    await stop();
  }
}

/** A trainer that does not say what this agent needs of it: no restart cures that. */
export class TrainerTooOld extends Error {
  readonly reason = 'TrainerTooOld';
  constructor(message: string) {
    super(message);
    this.name = 'TrainerTooOld';
  }
}

const untilAborted = (signal: AbortSignal) => new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));

/** The job's Failed record for an environment no restart can cure, its reason first (what the operator shows). */
async function failForEnvironment(bus: LearnerBus, maxSteps: number, err: EnvironmentUnusable, clock: Clock): Promise<void> {
  const previous = await bus.control.progress();
  const empty: LearnerProgress = {
    v: WIRE_VERSION, step: 0, maxSteps, state: 'Starting', policyVersion: 0, reward: null,
    groups: { accepted: 0, stale: 0, rejected: 0, leftOver: 0, published: 0 }, rejectedByReason: {}, updatedAt: '',
  };
  await bus.control.putProgress({ ...(previous ?? empty), state: 'Failed', message: `${err.reason}: ${err.message}`, updatedAt: new Date(clock.now()).toISOString() });
}

/** "<Reason>: <message>" for the Failed record: the machine reason first, as a condition would carry it. */
function failureOf(err: unknown): string {
  const reason = (err as { reason?: unknown }).reason;
  const message = err instanceof Error ? err.message : String(err);
  return `${typeof reason === 'string' ? reason : err instanceof Error ? err.name : 'Error'}: ${message}`;
}

const trainerReasons = new Set<string>(['LogprobMismatch', 'InvalidTokens', 'InvalidLogprobs', 'PromptMismatch', 'TextMismatch', 'FutureVersion', 'UnknownVersion']);
/** The trainer's rejection reasons are the bus's words for the same findings (an unknown one is Malformed). */
const trainerReason = (reason: string): RejectReason => (trainerReasons.has(reason) ? (reason as RejectReason) : 'Malformed');

/** Mean reward of the groups' completions; undefined for none. */
const meanReward = (groups: TrajectoryGroup[]) => {
  const rewards = groups.flatMap((g) => g.completions.map((c) => c.reward));
  return rewards.length > 0 ? rewards.reduce((a, b) => a + b, 0) / rewards.length : undefined;
};

/** A killed trainer is restarted by its supervisor (Kubernetes, or `rlkube run`): wait for it, don't fail. */
function untilTrainerAnswers<T>(call: () => Promise<T>, { log, signal, clock }: Pick<LearnerAgentDeps, 'log' | 'signal' | 'clock'>): Promise<T> {
  return retry('trainer', call, { classify: isPeerAway, backoff: PEER_BACKOFF, signal, log, sleep: (ms) => clock.sleep(ms) });
}
