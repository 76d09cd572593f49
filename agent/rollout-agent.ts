// The rollout agent: claims tasks, keeps its engine on the policy the sync mode asks for, samples G completions,
// scores them with the environment's grader and publishes the group. An engine error or hang costs a retry, not
// the agent. `RolloutAgent` takes its bus, engine, environment and clock as ports; `runRolloutAgent` wires the real ones.
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TINY_MODEL, type RolloutAgentConfig } from '../api/index.js';
import { BusError, WorkerBus, WorkerKey, connectBus, jobNames, type ClaimedTask, type Heartbeat, type PolicyRecord, type SyncMode, type TrajectoryGroup, type Watch } from '../bus/index.js';
import { every, realClock, untilAborted, type Clock } from '../util/clock.js';
import { retry } from '../util/retry.js';
import { EngineClient } from './engine-client.js';
import { EnvironmentClient, EnvironmentUnusable, type EnvironmentInfo } from './environment-client.js';
import { PEER_BACKOFF, isPeerAway } from './http.js';
import type { AgentMetrics } from './metrics.js';

/** What a rollout worker does with a task under its job's sync mode. */
export type TaskPlan = { action: 'generate'; version: number } | { action: 'drop'; reason: 'Superseded' };

/**
 * The rollout side of a sync mode. SequentialPull: generate with the task's own version; a task older than the
 * newest policy is a leftover whose group would be stale, so it is dropped. AsyncPushPull: generate with the
 * newest policy known (never older than the task's), swapping weights between groups.
 */
export function planTask(mode: SyncMode, taskVersion: number, newestVersion: number | undefined): TaskPlan {
  if (mode === 'SequentialPull') {
    return newestVersion !== undefined && newestVersion > taskVersion ? { action: 'drop', reason: 'Superseded' } : { action: 'generate', version: taskVersion };
  }
  return { action: 'generate', version: Math.max(newestVersion ?? 0, taskVersion) };
}

/** The bus as a rollout agent uses it (WorkerBus). */
export interface RolloutBus {
  claim(waitMs: number): Promise<ClaimedTask | undefined>;
  publish(group: TrajectoryGroup, signal?: AbortSignal): Promise<unknown>;
  heartbeat(state: Heartbeat['state'], policyVersion: number | null, groupsPublished: number): Promise<unknown>;
  policyAt(version: number): Promise<PolicyRecord | undefined>;
  watchPolicy(onChange: (record: PolicyRecord) => void): Promise<Watch>;
  weightsToFile(record: PolicyRecord, path: string): Promise<unknown>;
}
export type RolloutEngine = Pick<EngineClient, 'health' | 'load' | 'complete'>;
export type RolloutEnvironment = Pick<EnvironmentClient, 'ready' | 'task' | 'score'>;

export interface RolloutPorts {
  bus: RolloutBus;
  engine: RolloutEngine;
  environment: RolloutEnvironment;
  clock: Clock;
}

export interface RolloutSettings {
  /** The job's key, written into every group. */
  jobKey: string;
  workerId: string;
  pool: string;
  mode: SyncMode;
  groupSize: number;
  maxTokens: number;
  temperature: number;
  /** Where policy files fetched from the bus are written for the engine to read. */
  weightsDir: string;
}

const HEARTBEAT_MS = 2000;
const CLAIM_WAIT_MS = 2000;
/** A released task waits this long before it is handed out again: a failing engine is spared a hot loop. */
const RELEASE_DELAY_MS = 1000;

export class RolloutAgent {
  private newest: PolicyRecord | undefined;
  private loaded: { version: number; digest: string } | undefined;
  /** The policy file on the engine's disk (only the loaded one is kept). */
  private onDisk: string | undefined;
  private published = 0;
  private state: Heartbeat['state'] = 'Idle';

  constructor(
    private readonly ports: RolloutPorts,
    private readonly settings: RolloutSettings,
    private readonly log: Logger,
    private readonly metrics: AgentMetrics,
  ) {}

  /** Works until `signal` aborts; throws only what no retry cures (the job's queue gone, the connection closed). */
  async run(signal: AbortSignal): Promise<void> {
    const { bus, clock } = this.ports;
    const policyWatch = await bus.watchPolicy((record) => {
      if (!this.newest || record.version > this.newest.version) this.newest = record;
    });
    const stopHeartbeats = every(clock, HEARTBEAT_MS, () => void this.beat(this.state));
    try {
      const environment = await this.environmentOrWhy();
      if (!environment) {
        await untilAborted(signal);
        return;
      }
      await this.waitForEngine(signal);
      this.log.info({ pool: this.settings.pool, mode: this.settings.mode, grader: environment.graderId }, 'rollout agent ready');
      while (!signal.aborted) {
        // claim() rides out a stalled or restarting server itself.
        const claimed = await bus.claim(CLAIM_WAIT_MS);
        if (claimed) await this.handle(claimed, environment, signal);
      }
    } finally {
      stopHeartbeats();
      await this.beat('Stopping');
      await policyWatch.stop();
    }
  }

  /**
   * The environment's identity, or undefined when it says it cannot be used: no restart cures that, so the agent
   * says why and waits to be stopped (the learner fails the job with the same reason) rather than restart-loop.
   */
  private async environmentOrWhy(): Promise<EnvironmentInfo | undefined> {
    try {
      return await this.ports.environment.ready();
    } catch (err) {
      if (!(err instanceof EnvironmentUnusable)) throw err;
      this.log.error({ reason: err.reason }, `environment unusable: ${err.message}`);
      return undefined;
    }
  }

  /** One task: claimed → generated → scored → published, or released back to the queue on any failure. */
  async handle(claimed: ClaimedTask, environment: EnvironmentInfo, signal: AbortSignal): Promise<void> {
    const { task } = claimed;
    const plan = planTask(this.settings.mode, task.policyVersion, this.newest?.version);
    if (plan.action === 'drop') return claimed.drop(plan.reason);
    let engineAway = false;
    try {
      await this.ports.bus.publish(await this.makeGroup(claimed, plan.version, environment), signal);
      claimed.done();
      this.published++;
      this.metrics.groupsPublished.inc();
    } catch (err) {
      // The task goes back to the queue for this or another worker.
      claimed.release(RELEASE_DELAY_MS);
      this.metrics.engineErrors.inc({ reason: (err as { reason?: string }).reason ?? 'Error' });
      this.log.warn({ task: task.taskId, err: String(err) }, 'task released');
      engineAway = isPeerAway(err);
    }
    await this.beat('Idle');
    if (engineAway) {
      // An engine that went away (restarting, stalled) is waited for before the next claim, so its outage does not
      // burn the deliveries of task after task until they look like poison. Restarted, it holds its initial
      // weights: the policy is loaded again.
      this.loaded = undefined;
      await this.waitForEngine(signal);
    }
  }

  private async makeGroup(claimed: ClaimedTask, version: number, environment: EnvironmentInfo): Promise<TrajectoryGroup> {
    const { task } = claimed;
    const { engine, clock } = this.ports;
    const { groupSize, maxTokens, temperature } = this.settings;
    const started = clock.now();
    const { prompt } = await this.ports.environment.task(task.seq);
    const loaded = await this.ensureLoaded(version);
    await this.beat('Generating');
    const samples = await engine.complete(prompt, groupSize, maxTokens, temperature);
    const generateMs = clock.now() - started;
    const scoring = clock.now();
    const { rewards } = await this.ports.environment.score(task.seq, samples.map((s) => s.text));
    return {
      job: this.settings.jobKey,
      taskId: task.taskId,
      taskSeq: task.seq,
      policyVersion: loaded.version,
      policyDigest: loaded.digest,
      workerId: this.settings.workerId,
      pool: this.settings.pool,
      graderId: environment.graderId,
      promptTokenIds: Int32Array.from(samples[0]!.promptTokenIds),
      completions: samples.map((s, i) => ({
        tokenIds: Int32Array.from(s.tokenIds),
        logprobs: Float32Array.from(s.logprobs),
        reward: rewards[i]!,
        text: s.text,
        finishReason: s.finishReason,
      })),
      timings: { generateMs, scoreMs: clock.now() - scoring },
    };
  }

  /** The engine on policy `version`: fetched from the bus (digest-checked on the way to disk) and loaded, unless it already is. */
  private async ensureLoaded(version: number): Promise<{ version: number; digest: string }> {
    if (this.loaded?.version === version) return this.loaded;
    const { bus, engine, clock } = this.ports;
    const record = this.newest?.version === version ? this.newest : await bus.policyAt(version);
    if (!record) throw new BusError('NotFound', `policy v${version} is not (or no longer) published`);
    await this.beat('Loading');
    const started = clock.now();
    const location = record.location;
    const inStore = location.kind === 'object';
    const path = inStore ? join(this.settings.weightsDir, `policy-v${version}.safetensors`) : location.uri;
    if (inStore) await bus.weightsToFile(record, path);
    await engine.load({ version, path, digest: record.digest });
    // Only the loaded version stays on the engine's disk.
    if (this.onDisk && this.onDisk !== path) rmSync(this.onDisk, { force: true });
    this.onDisk = inStore ? path : undefined;
    this.loaded = { version, digest: record.digest };
    this.log.info({ version, loadMs: Math.round(clock.now() - started) }, 'policy loaded');
    return this.loaded;
  }

  /** Until the engine answers its health check; returns early (quietly) when the agent is stopped. */
  private async waitForEngine(signal: AbortSignal): Promise<void> {
    const { engine, clock } = this.ports;
    await retry('engine health', () => engine.health(), { classify: () => true, backoff: PEER_BACKOFF, signal, log: this.log, clock }).catch((err: unknown) => {
      if (!signal.aborted) throw err;
    });
  }

  private beat(next: Heartbeat['state']): Promise<void> {
    this.state = next;
    // A missed heartbeat is repaired by the next one (every HEARTBEAT_MS): not worth failing a task for.
    return this.ports.bus.heartbeat(this.state, this.loaded?.version ?? null, this.published).then(
      () => undefined,
      () => undefined,
    );
  }
}

/** The agent process's wiring: its job's bus, its engine and environment over HTTP, the system clock. */
export async function runRolloutAgent(config: RolloutAgentConfig, log: Logger, metrics: AgentMetrics, signal: AbortSignal): Promise<void> {
  const spec = config.jobSpec;
  const job = { namespace: config.namespace, name: config.job };
  const nc = await connectBus({ servers: config.natsServers, ...(config.natsCreds ? { credsFile: config.natsCreds } : {}), inboxPrefix: jobNames(job).inboxPrefix, name: config.workerId });
  try {
    // The worker's signing key lives beside the weights, on the pod's /tmp volume: a restarted agent keeps the key
    // it registered (a new one under the same worker id would be refused).
    const key = WorkerKey.loadOrCreate(join(tmpdir(), 'rlkube-keys', `${config.workerId}.nk`));
    const bus = await WorkerBus.open(nc, job, { workerId: config.workerId, pool: config.pool, log, maxDeliveries: spec.sync.maxTaskDeliveries, key });
    // The engine reads the policy files from here: /tmp is a volume the pod's two containers share.
    const weightsDir = join(tmpdir(), `rlkube-${config.workerId}`);
    rmSync(weightsDir, { recursive: true, force: true }); // a restarted agent's leftovers are of no use
    mkdirSync(weightsDir, { recursive: true });
    const ports: RolloutPorts = {
      bus,
      engine: new EngineClient(config.engineUrl, config.engineKind ?? (spec.model.name === TINY_MODEL ? 'tiny' : 'hf'), spec.model.name),
      environment: new EnvironmentClient(config.environmentUrl, log, signal),
      clock: realClock,
    };
    const settings: RolloutSettings = {
      jobKey: jobNames(job).key,
      workerId: config.workerId,
      pool: config.pool,
      mode: spec.sync.mode,
      groupSize: spec.algorithm.groupSize,
      maxTokens: spec.model.maxTokens,
      temperature: spec.algorithm.temperature,
      weightsDir,
    };
    await new RolloutAgent(ports, settings, log, metrics).run(signal);
  } finally {
    await nc.drain().catch(() => undefined);
  }
}
