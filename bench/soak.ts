// Soak benchmark (`npm run bench -- soak`): does memory stay flat over a long run? Two parts, each against real
// servers: (1) ≥ 20,000 learner steps of small groups through the bus (a real nats-server, synthetic workers in
// this process, the learner side — LearnerBus as the learner agent drives it — in a child process of its own,
// its RSS read after a GC); (2) 200 RLJob create/delete cycles through the operator (a child process, as in
// its pod) on a real control plane. RSS of each at the start (after a warm-up) and at the end.
//
// Settings (environment): RLKUBE_SOAK_STEPS (default 20000), RLKUBE_SOAK_JOBS (default 200).
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { parseRLJobSpec, type RLJob } from '../api/index.js';
import { LearnerBus, WorkerBus, connectBus, jobNames, provisionJob, type JobKey } from '../bus/index.js';
import { startNatsServer } from '../local/nats-server.js';
import { KubeClient, RESOURCES, type KubeObject } from '../operator/kube/client.js';
import { runSyntheticWorker } from '../test/harness/groups.js';
import { startControlPlane } from '../test/harness/kube.js';
import { startNats } from '../test/harness/nats.js';
import { REPO_ROOT, cpuJob, kube, startOperator } from '../test/harness/operator-fixtures.js';

const JOB: JobKey = { namespace: 'soak', name: 'learner' };
const BATCH = 4;
const WINDOW = 16;
/** Steps (or job cycles) before the start figure: caches, JIT and pools have reached their working size. */
const WARMUP_FRACTION = 0.1;

const rssMbOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const round1 = (x: number) => Number(x.toFixed(1));

interface LearnerReport { phase: 'warm' | 'progress' | 'end'; step: number; rss_mb: number; heap_mb: number; counts?: Record<string, unknown>; published?: number }

/** The learner side, in its own process: `steps` steps of AsyncPushPull, a report line (JSON) at warm-up and at the end. */
async function learnerProcess(url: string, steps: number, warmup: number): Promise<void> {
  const nc = await connectBus({ servers: url, name: 'soak-learner' });
  const bus = await LearnerBus.open(nc, JOB, {
    mode: 'AsyncPushPull', batchSize: BATCH, maxStaleness: 1, taskWindow: WINDOW, vocabSize: 64, maxGroupBytes: 1 << 20,
    taskPayload: (seq) => ({ prompt: `p${seq}` }),
  });
  const report = (phase: LearnerReport['phase'], step: number, extra: Partial<LearnerReport> = {}) => {
    (globalThis as { gc?: () => void }).gc?.(); // what is retained, not what awaits collection
    const m = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ phase, step, rss_mb: round1(m.rss / 2 ** 20), heap_mb: round1(m.heapUsed / 2 ** 20), ...extra })}\n`);
  };
  await bus.publishPolicy(0, { bytes: new Uint8Array([0]) });
  for (let step = 1; step <= steps; step++) {
    const batch = await bus.nextBatch(step, step - 1, () => ({ ok: true }));
    await bus.commit(batch);
    await bus.publishPolicy(step, { bytes: new Uint8Array([step % 256]) });
    if (step === warmup) report('warm', step);
    else if (step % 2000 === 0) report('progress', step);
  }
  const published = await bus.drain();
  report('end', steps, { counts: { ...bus.counts }, published });
  bus.close();
  await nc.close();
}

/** Part 1: the bus soak; returns RSS of the learner side after warm-up and at the end. */
export async function busSoak(steps: number) {
  const server = await startNatsServer({});
  const nc = await connectBus({ servers: server.url, name: 'soak' });
  await provisionJob(nc, JOB);
  const controller = new AbortController();
  const workers = await Promise.all([0, 1].map((i) => WorkerBus.open(nc, JOB, { workerId: `w${i}`, pool: 'soak' })));
  // As AsyncPushPull agents do, groups are generated with the newest policy announced.
  let newest = 0;
  const watch = await workers[0]!.watchPolicy((record) => (newest = Math.max(newest, record.version)));
  const running = workers.map((w) => runSyntheticWorker(w, jobNames(JOB).key, controller.signal, { groupSize: 2, tokens: 4, versionOf: () => newest }));
  const warmup = Math.round(steps * WARMUP_FRACTION);
  const started = performance.now();
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/soak.ts', 'learner', server.url, String(steps), String(warmup)], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'],
  });
  const reports: LearnerReport[] = [];
  for await (const line of createInterface({ input: child.stdout! })) {
    const r = JSON.parse(line) as LearnerReport;
    reports.push(r);
    const rate = r.step / ((performance.now() - started) / 1000);
    console.log(`bus: step ${r.step}/${steps} (${rate.toFixed(0)} steps/s): learner rss ${r.rss_mb} MB, heap ${r.heap_mb} MB`);
  }
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  controller.abort();
  await Promise.all(running);
  await watch.stop();
  await nc.close();
  await server.stop();
  const warm = reports.find((r) => r.phase === 'warm');
  const end = reports.find((r) => r.phase === 'end');
  if (code !== 0 || !warm || !end) throw new Error(`the learner process exited ${code} after ${reports.at(-1)?.step ?? 0} steps`);
  console.log(`bus: counts ${JSON.stringify(end.counts)}, published ${end.published}`);
  return { start: warm.rss_mb, end: end.rss_mb, seconds: (performance.now() - started) / 1000 };
}

/** Part 2: `cycles` RLJobs created and deleted through the operator, 10 at a time; its RSS after warm-up and at the end. */
export async function operatorSoak(cycles: number) {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'operator/tsconfig.build.json'], { cwd: REPO_ROOT, stdio: 'inherit' });
  const [cp, nats] = await Promise.all([startControlPlane({ name: 'bench-soak', cpuNodes: 1 }), startNats({})]);
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  const client = new KubeClient(kc, { fieldManager: 'rlkube-bench' });
  const namespace = 'soak';
  let operator: Awaited<ReturnType<typeof startOperator>> | undefined;
  try {
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kube(cp, ['create', 'namespace', namespace]);
    // One replica, no election: a lease lost on a loaded machine restarts the process, and its RSS with it.
    operator = await startOperator({
      kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity: 'soak', compiled: true, logLevel: 'warn',
      args: ['--namespaces', namespace, '--leader-elect', 'false'],
    });
    const pid = operator.child.pid!;
    const wave = 10;
    const warmupWaves = Math.max(1, Math.round((cycles / wave) * WARMUP_FRACTION));
    let start = 0;
    const started = performance.now();
    for (let w = 0; w * wave < cycles; w++) {
      const jobs = Array.from({ length: Math.min(wave, cycles - w * wave) }, (_, i) => {
        const m = cpuJob(`soak-${w * wave + i}`);
        return { ...m, metadata: { name: m.metadata.name, namespace }, spec: parseRLJobSpec(m.spec) } as RLJob;
      });
      await Promise.all(jobs.map((j) => client.apply(RESOURCES.rljobs, j as unknown as KubeObject)));
      // Reconciled: children made and the job's bus provisioned (Progressing past ProvisioningBus).
      await until(`wave ${w}: ${jobs.length} jobs started`, async () => {
        const listed = (await client.list<KubeObject & { status?: { conditions?: Array<{ type: string; reason?: string }> } }>(RESOURCES.rljobs, namespace)).items;
        return listed.filter((j) => j.status?.conditions?.some((c) => c.type === 'Progressing' && c.reason === 'Starting')).length >= jobs.length;
      });
      await Promise.all(jobs.map((j) => client.delete(RESOURCES.rljobs, namespace, j.metadata.name)));
      // Finalized: the bus torn down and the job gone.
      await until(`wave ${w}: jobs deleted`, async () => (await client.list(RESOURCES.rljobs, namespace)).items.length === 0);
      const done = (w + 1) * wave;
      if (w + 1 === warmupWaves) start = rssMbOf(pid);
      if ((w + 1) % 5 === 0 || done >= cycles) {
        console.log(`operator: ${Math.min(done, cycles)}/${cycles} jobs created and deleted (${((performance.now() - started) / 1000).toFixed(0)} s): rss ${rssMbOf(pid).toFixed(1)} MB`);
      }
    }
    return { start: round1(start), end: round1(rssMbOf(pid)), seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    if (operator) process.stderr.write(`operator log (tail):\n${operator.logs().slice(-5000)}\n`);
    throw err;
  } finally {
    await operator?.stop('SIGTERM');
    client.close();
    await Promise.all([cp.stop(), nats.stop()]);
  }
}

async function until(what: string, done: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function run(): Promise<Record<string, number>> {
  const steps = Number(process.env.RLKUBE_SOAK_STEPS ?? 20_000);
  const jobs = Number(process.env.RLKUBE_SOAK_JOBS ?? 200);
  const learner = await busSoak(steps);
  console.log(`bus: ${steps} steps in ${learner.seconds.toFixed(0)} s; learner rss ${learner.start} → ${learner.end} MB`);
  const operator = await operatorSoak(jobs);
  console.log(`operator: ${jobs} jobs in ${operator.seconds.toFixed(0)} s; rss ${operator.start} → ${operator.end} MB`);
  return {
    steps,
    jobs,
    learner_rss_start_mb: learner.start,
    learner_rss_end_mb: learner.end,
    operator_rss_start_mb: operator.start,
    operator_rss_end_mb: operator.end,
    growth_ratio: Number(Math.max(learner.end / learner.start, operator.end / operator.start).toFixed(3)),
  };
}

if (process.argv[2] === 'learner' && process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await learnerProcess(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]));
}
