// The rollout agent: claims tasks, keeps its engine on the right policy (SequentialPull: the task's
// version; AsyncPushPull: the newest, swapped between groups), samples G completions, scores them with
// the environment's verifier and publishes the group. An engine error or hang costs a retry, not the agent.
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TINY_MODEL, type RolloutAgentConfig } from '../api/index.js';
import { BusError, WorkerBus, WorkerKey, connectBus, jobNames, type ClaimedTask, type Heartbeat, type PolicyRecord } from '../bus/index.js';
import { EngineClient } from './engine-client.js';
import { HttpError } from './http.js';
import { EnvironmentClient, EnvironmentUnusable, type EnvironmentInfo } from './environment-client.js';
import type { AgentMetrics } from './metrics.js';

export async function runRolloutAgent(config: RolloutAgentConfig, log: Logger, metrics: AgentMetrics, signal: AbortSignal) {
  const spec = config.jobSpec;
  const job = { namespace: config.namespace, name: config.job };
  const nc = await connectBus({ servers: config.natsServers, ...(config.natsCreds ? { credsFile: config.natsCreds } : {}), inboxPrefix: jobNames(job).inboxPrefix, name: config.workerId });
  // The worker's signing key lives beside the weights, on the pod's /tmp volume: a restarted agent keeps the key it
  // registered (a new one under the same worker id would be refused).
  const key = WorkerKey.loadOrCreate(join(tmpdir(), 'rlkube-keys', `${config.workerId}.nk`));
  const bus = await WorkerBus.open(nc, job, { workerId: config.workerId, pool: config.pool, log, maxDeliveries: spec.sync.maxTaskDeliveries, key });
  const environment = new EnvironmentClient(config.environmentUrl, log, signal);
  const engine = new EngineClient(config.engineUrl, config.engineKind ?? (spec.model.name === TINY_MODEL ? 'tiny' : 'hf'), spec.model.name);
  // The engine reads the policy files from here: /tmp is a volume the pod's two containers share.
  const weightsDir = join(tmpdir(), `rlkube-${config.workerId}`);
  rmSync(weightsDir, { recursive: true, force: true }); // a restarted agent's leftovers are of no use
  mkdirSync(weightsDir, { recursive: true });

  let newest: PolicyRecord | undefined;
  const policyWatch = await bus.watchPolicy((record) => {
    if (!newest || record.version > newest.version) newest = record;
  });
  let loaded: { version: number; digest: string } | undefined;
  /** The policy file on the engine's disk (only the newest one is kept). */
  let onDisk: string | undefined;
  let published = 0;
  let state: Heartbeat['state'] = 'Idle';
  const beat = (next: Heartbeat['state']) => {
    state = next;
    return bus.heartbeat(state, loaded?.version ?? null, published).catch(() => undefined);
  };
  const heartbeats = setInterval(() => void beat(state), 2000);

  async function ensureLoaded(version: number): Promise<void> {
    if (loaded?.version === version) return;
    const record = newest?.version === version ? newest : await bus.policyAt(version);
    if (!record) throw new BusError('NotFound', `policy v${version} is not (or no longer) published`);
    await beat('Loading');
    const started = performance.now();
    // Streamed to disk and digest-checked on the way (nothing is written under the name unless it matches).
    const location = record.location;
    const inStore = location.kind === 'object';
    const path = inStore ? join(weightsDir, `policy-v${version}.safetensors`) : location.uri;
    if (inStore) await bus.weightsToFile(record, path);
    await engine.load({ version, path, digest: record.digest });
    // Only the loaded version stays on the engine's disk.
    if (onDisk && onDisk !== path) rmSync(onDisk, { force: true });
    onDisk = inStore ? path : undefined;
    loaded = { version, digest: record.digest };
    log.info({ version, loadMs: Math.round(performance.now() - started) }, 'policy loaded');
  }

  async function handle(claimed: ClaimedTask): Promise<void> {
    const { task } = claimed;
    const sequential = spec.sync.mode === 'SequentialPull';
    // A SequentialPull task of an older version than the newest policy is a leftover: its group would be stale.
    if (sequential && newest && newest.version > task.policyVersion) return claimed.drop('Superseded');
    const version = sequential ? task.policyVersion : Math.max(newest?.version ?? 0, task.policyVersion);
    const started = performance.now();
    try {
      const { prompt } = await environment.task(task.seq);
      await ensureLoaded(version);
      await beat('Generating');
      const samples = await engine.complete(prompt, spec.algorithm.groupSize, spec.model.maxTokens, spec.algorithm.temperature);
      const generateMs = performance.now() - started;
      const scoring = performance.now();
      const { rewards } = await environment.score(task.seq, samples.map((s) => s.text));
      await bus.publish(
        {
          job: jobNames(job).key,
          taskId: task.taskId,
          taskSeq: task.seq,
          policyVersion: loaded!.version,
          policyDigest: loaded!.digest,
          workerId: config.workerId,
          pool: config.pool,
          verifierId: environmentInfo.verifierId,
          promptTokenIds: Int32Array.from(samples[0]!.promptTokenIds),
          completions: samples.map((s, i) => ({
            tokenIds: Int32Array.from(s.tokenIds),
            logprobs: Float32Array.from(s.logprobs),
            reward: rewards[i]!,
            text: s.text,
            finishReason: s.finishReason,
          })),
          timings: { generateMs, scoreMs: performance.now() - scoring },
        },
        signal,
      );
      claimed.done();
      published++;
      metrics.groupsPublished.inc();
      await beat('Idle');
    } catch (err) {
      // The task goes back to the queue for this or another worker; a short delay spares a failing engine.
      claimed.release(1000);
      metrics.engineErrors.inc({ reason: (err as { reason?: string }).reason ?? 'Error' });
      log.warn({ task: task.taskId, err: String(err) }, 'task released');
      await beat('Idle');
      // An engine that went away (restarting, stalled) is waited for before the next claim, so its outage does
      // not burn the deliveries of task after task until they look like poison.
      if (err instanceof HttpError && (err.reason === 'Unreachable' || err.reason === 'Timeout')) {
        loaded = undefined; // a restarted engine holds its initial weights: load the policy again
        await waitForEngine(engine, log, signal);
      }
    }
  }

  let environmentInfo: EnvironmentInfo;
  try {
    environmentInfo = await environment.ready();
  } catch (err) {
    if (!(err instanceof EnvironmentUnusable)) throw err;
    // No restart cures a bad environment: say why and wait to be stopped (the learner fails the job with the
    // same reason), rather than exit into a restart loop.
    log.error({ reason: err.reason }, `environment unusable: ${err.message}`);
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    clearInterval(heartbeats);
    await policyWatch.stop();
    await nc.drain().catch(() => undefined);
    return;
  }
  await waitForEngine(engine, log, signal);
  log.info({ pool: config.pool, mode: spec.sync.mode, verifier: environmentInfo.verifierId }, 'rollout agent ready');
  try {
    while (!signal.aborted) {
      // claim() rides out a stalled or restarting server itself; what it throws (the job's queue is gone, the
      // connection closed) no retry cures: the agent stops with that reason.
      const claimed = await bus.claim(2000);
      if (claimed) await handle(claimed);
    }
  } finally {
    clearInterval(heartbeats);
    await beat('Stopping');
    await policyWatch.stop();
    await nc.drain().catch(() => undefined);
  }
}

async function waitForEngine(engine: EngineClient, log: Logger, signal: AbortSignal): Promise<void> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      await engine.health();
      return;
    } catch (err) {
      if (attempt % 20 === 19) log.warn({ err: String(err) }, 'waiting for the engine');
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
