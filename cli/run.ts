// `rlkube run FILE.yaml`: the RLJob on one machine, no cluster — an embedded nats-server, the pools' engines
// and rollout agents, the trainer and the learner agent as local processes, live progress, a summary.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import {
  BusLimits, agentJobSpec, engineServerArgs, environmentCheckArgs, environmentProblem, environmentServerArgs, formatAgentEnv, trainerServerArgs,
  type AgentConfig, type RLJob, type RLJobSpec,
} from '../api/index.js';
import { connectBus, provisionJob, watchLearnerProgress, type LearnerProgress } from '../bus/index.js';
import { natsServerProcess, waitForNatsReady } from '../local/nats-server.js';
import { freePort } from '../local/ports.js';
import { datasetCache } from '../local/toolchain.js';
import { ProgressLine } from './progress.js';
import { writeReport, type RunSummary } from './report.js';
import { Supervisor } from './supervisor.js';

export interface RunOptions {
  job: RLJob;
  outDir: string;
  python: string;
  /** A warm-start policy file for the trainer and engines (version 0) instead of the seeded init. */
  initWeights?: string;
  log: Logger;
  /**
   * The bus's ack wait for tasks and groups (default: the bus's, 30 s and 60 s): how long a stalled or dead
   * worker's task, or the learner's held groups, wait before going to another. Short values suit chaos tests.
   */
  ackWaitMs?: number;
  /** Stops the run (Ctrl-C); the summary is still written. */
  signal: AbortSignal;
}

const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** A job this machine cannot run as written, found before anything starts. */
export class RunError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
    this.name = 'RunError';
  }
}
const NAMESPACE = 'local';
const NATS_PROCESS = 'nats-server';

export async function runJob({ job, outDir, python, initWeights, ackWaitMs, log, signal }: RunOptions): Promise<RunSummary> {
  if (job.spec.rollout.pools.some((p) => p.engine.kind === 'vllm')) {
    throw new RunError('EngineNotLocal', 'rollout.pools[].engine.kind vllm needs GPUs: rlkube run starts tiny and hf engines only (run the job on a cluster)');
  }
  if (job.spec.environment.image) {
    throw new RunError('EnvironmentNotLocal', 'environment.image: a custom environment image runs on a cluster; rlkube run starts the built-in environment server');
  }
  // A bad environment stops the run here, naming the field, before any process starts.
  await checkEnvironment(job.spec, python);
  const started = performance.now();
  const spec = job.spec;
  const name = job.metadata.name;
  mkdirSync(join(outDir, 'logs'), { recursive: true });
  const supervisor = new Supervisor(join(outDir, 'logs'), log, () =>
    writeFileSync(join(outDir, 'processes.json'), JSON.stringify(supervisor.pids(), null, 2)),
  );
  // The embedded bus is supervised like the rest: a nats-server that dies comes back on the same port and
  // file store, and the clients reconnect, so it costs time, not data.
  const nats = await natsServerProcess({ storeDir: join(outDir, 'nats'), maxPayload: BusLimits.serverMaxPayloadBytes, syncAlways: true });
  const natsLog = join(outDir, 'logs', `${NATS_PROCESS}.log`);
  const logFrom = existsSync(natsLog) ? statSync(natsLog).size : 0; // (an --out reused: only this run's lines)
  supervisor.start({ name: NATS_PROCESS, command: nats.command, args: nats.args });
  await waitForNatsReady(nats.port, 15_000, () => (existsSync(natsLog) ? readFileSync(natsLog).subarray(logFrom).toString() : ''));
  const nc = await connectBus({ servers: nats.url, name: 'rlkube-run' });
  await provisionJob(nc, { namespace: NAMESPACE, name }, ackWaitMs ? { taskAckWaitMs: ackWaitMs, groupAckWaitMs: ackWaitMs } : {});
  // Where to reach this run's bus (tools and tests join it, e.g. a second pool or a misbehaving worker).
  writeFileSync(join(outDir, 'run.json'), JSON.stringify({ natsUrl: nats.url, namespace: NAMESPACE, job: name }, null, 2));

  const pythonEnv = pythonEnvironment();
  const agentCommand = { command: process.execPath, args: ['--import', 'tsx', join(repoRoot, 'agent/main.ts')] };
  // One environment server for the rollout agents, and the learner's own: it re-scores what the workers claim.
  const environmentUrl = async (processName: string) => {
    const port = await freePort();
    supervisor.start({ name: processName, command: python, args: environmentServerArgs(spec, { host: '127.0.0.1', port, cacheDir: datasetCache() }), env: pythonEnv });
    return `http://127.0.0.1:${port}`;
  };
  const rolloutEnvironment = await environmentUrl('environment-rollout');
  const common = { natsServers: [nats.url], namespace: NAMESPACE, job: name, metricsPort: 0 };
  const trainerPort = await freePort();
  const algorithm = spec.algorithm;
  const warm = initWeights ? { initWeights: resolve(initWeights) } : {};
  supervisor.start({
    name: 'trainer',
    command: python,
    // one trainer process on this machine, whatever GPUs per node the learner asks on a cluster
    args: trainerServerArgs(spec, { ...spec.learner, gpusPerNode: 0 }, { host: '127.0.0.1', port: trainerPort, checkpointDir: join(outDir, 'trainer'), ...warm }),
    env: pythonEnv,
  });
  const learner: AgentConfig = {
    ...common, role: 'learner', workerId: `${name}-learner-0`, trainerUrl: `http://127.0.0.1:${trainerPort}`,
    environmentUrl: await environmentUrl('environment-learner'), jobSpec: agentJobSpec(spec, 'learner'),
  };
  supervisor.start({ name: 'learner-agent', ...agentCommand, env: formatAgentEnv(learner) });

  for (const pool of spec.rollout.pools) {
    for (let replica = 0; replica < pool.replicas; replica++) {
      const worker = `${name}-${pool.name}-${replica}`;
      const enginePort = await freePort();
      supervisor.start({
        name: `engine-${pool.name}-${replica}`,
        command: python,
        args: engineServerArgs(spec, { host: '127.0.0.1', port: enginePort, sampleSeed: algorithm.seed * 1000 + replica + 1, ...warm }),
        env: pythonEnv,
      });
      const rollout: AgentConfig = { ...common, role: 'rollout', workerId: worker, pool: pool.name, engineUrl: `http://127.0.0.1:${enginePort}`, engineKind: pool.engine.kind, environmentUrl: rolloutEnvironment, jobSpec: agentJobSpec(spec, 'rollout') };
      supervisor.start({ name: `agent-${pool.name}-${replica}`, ...agentCommand, env: formatAgentEnv(rollout) });
    }
  }

  const curve: Array<{ step: number; reward: number; t: number }> = [];
  let last: LearnerProgress | undefined;
  const progressLine = new ProgressLine(spec.sync.mode);
  const finished = new Promise<void>((resolveFinished) => {
    void watchLearnerProgress(nc, { namespace: NAMESPACE, name }, (progress) => {
      last = progress;
      if (progress.reward !== null && progress.step > 0 && curve.at(-1)?.step !== progress.step) curve.push({ step: progress.step, reward: progress.reward, t: Number(((performance.now() - started) / 1000).toFixed(2)) });
      progressLine.update(progress);
      if (progress.state === 'Succeeded' || progress.state === 'Failed') resolveFinished();
    }).then((watch) => signal.addEventListener('abort', () => void watch.stop()));
    signal.addEventListener('abort', () => resolveFinished());
  });
  await finished;
  progressLine.done();
  // The workload first, so nothing loses its bus while shutting down; then the bus.
  await supervisor.stop(supervisor.names().filter((n) => n !== NATS_PROCESS));
  await nc.close();
  await supervisor.stop();

  const summary: RunSummary = {
    job: name,
    mode: spec.sync.mode,
    steps: last?.step ?? 0,
    maxSteps: algorithm.maxSteps,
    reward: { initial: curve[0]?.reward ?? null, final: finalReward(curve), curve },
    groups: last?.groups ?? { accepted: 0, offPolicy: 0, stale: 0, rejected: 0, published: 0, deadLetteredTasks: 0 },
    rejectedByReason: last?.rejectedByReason ?? {},
    workers: last?.workers ?? {},
    restarts: supervisor.restarts(),
    state: signal.aborted && last?.state !== 'Succeeded' ? 'Interrupted' : (last?.state ?? 'Unknown'),
    wall_s: Number(((performance.now() - started) / 1000).toFixed(1)),
  };
  writeReport(outDir, summary);
  return summary;
}

/** The final reward: the mean of the last few steps, since one step's mean is noisy. */
function finalReward(curve: Array<{ reward: number }>): number | null {
  const tail = curve.slice(-5);
  return tail.length ? tail.reduce((a, p) => a + p.reward, 0) / tail.length : null;
}

/** The Python servers' environment beyond the inherited one (where a user's PYTHONPATH names a verifiers module's folder). */
const pythonEnvironment = (): Record<string, string> => ({ OMP_NUM_THREADS: '1' });

/** spec.environment as far as TypeScript can tell, then as the environment server makes it (datasets fetched). */
async function checkEnvironment(spec: RLJobSpec, python: string): Promise<void> {
  const problem = environmentProblem(spec.environment);
  if (problem) throw new RunError(problem.reason, problem.message);
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolveRun) => {
    execFile(python, environmentCheckArgs(spec, datasetCache()), { env: { ...process.env, ...pythonEnvironment() }, timeout: 15 * 60_000 },
      (err, out, errOut) => resolveRun({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: out, stderr: errOut }));
  });
  if (code === 0) return;
  let refusal: { reason?: string; message?: string } = {};
  try {
    refusal = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
  } catch {
    // not the checker's answer: Python itself failed (reported below)
  }
  if (refusal.reason && refusal.message) throw new RunError(refusal.reason, refusal.message);
  throw new RunError('EnvironmentCheckFailed', `environment check (${python} -m rlkube_env.cli) exited ${code}: ${stderr.trim().slice(-2000)}`);
}

