// Benchmark (`npm run bench -- operator`): N RLJobs applied at once → time until every child exists
// (Learner, RolloutPool, Deployment, StatefulSet, Service), against the same client creating the same child
// objects directly, all at once (through the same kind of connection pool as the operator's); plus the
// operator's peak RSS (it runs as a child process, as in its pod). The bench's client applies under its own
// field manager, as a person's kubectl would. Rounds of both, interleaved (each round's figures printed);
// the result is the best of each (the machine is shared: noise only ever adds time).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { parseRLJobSpec, type RLJob } from '../api/index.js';
import { stamped } from '../operator/controllers/apply.js';
import type { BuildConfig } from '../operator/controllers/builders.js';
import { buildLearnerService, buildStatefulSet } from '../operator/controllers/learner.js';
import { buildLearner, buildPools } from '../operator/controllers/rljob.js';
import { buildDeployment } from '../operator/controllers/rolloutpool.js';
import { KubeClient, RESOURCES, type KubeObject, type ResourceType } from '../operator/kube/client.js';
import { Informer } from '../operator/kube/informer.js';
import { startControlPlane } from '../test/harness/kube.js';
import { startNats } from '../test/harness/nats.js';
import { REPO_ROOT, cpuJob, httpGet, kube, persistentVolumes, startOperator, type OperatorProcess } from '../test/harness/operator-fixtures.js';

const CHILD_TYPES: ResourceType[] = [RESOURCES.learners, RESOURCES.rolloutpools, RESOURCES.deployments, RESOURCES.statefulsets, RESOURCES.services];
const log = pino({ level: 'silent' });

function jobsIn(namespace: string, count: number, suspend: boolean): RLJob[] {
  return Array.from({ length: count }, (_, i) => {
    const m = cpuJob(`bench-${i}`, 1, { suspend });
    return { ...m, metadata: { name: m.metadata.name, namespace }, spec: parseRLJobSpec(m.spec) } as RLJob;
  });
}

/**
 * What the operator would make for a job, made by hand: the same objects as it sends them, but for the
 * owner references (there is no RLJob in this namespace, and a child of a missing owner is deleted).
 */
function childrenOf(job: RLJob, config: BuildConfig): KubeObject[] {
  const unowned = <T extends KubeObject>(o: T): T => ({ ...o, metadata: { ...o.metadata, ownerReferences: undefined } });
  const served = <T extends KubeObject & { spec: object }>(o: T): T => ({ ...o, metadata: { ...o.metadata, uid: 'none' }, spec: { ...o.spec, suspend: false } });
  const learner = buildLearner(job);
  const pools = buildPools(job);
  return [
    learner, ...pools,
    ...pools.map((p) => buildDeployment(served(p), job, config)),
    buildStatefulSet(served(learner), job, config), buildLearnerService(served(learner)),
  ].map((o) => stamped(unowned(o)));
}

/** Resolves with the seconds from `start()` until `expected` children are seen by a watch in `namespace`. */
async function timeUntilAllSeen(kc: KubeConfig, client: KubeClient, namespace: string, expected: number, start: () => Promise<unknown>): Promise<number> {
  const informers = CHILD_TYPES.map((t) => new Informer<KubeObject>(kc, client, t, [namespace], log));
  await Promise.all(informers.map((i) => i.start()));
  await Promise.all(informers.map((i) => i.synced));
  const seen = () => informers.reduce((n, i) => n + i.list(namespace).length, 0);
  let t0 = 0;
  const done = new Promise<number>((resolve, reject) => {
    const complete = new Map<string, number>();
    const check = () => {
      if (!t0) return;
      for (const i of informers) {
        if (!complete.has(i.type.kind) && i.list(namespace).length >= expected / informers.length) complete.set(i.type.kind, (performance.now() - t0) / 1000);
      }
      if (seen() >= expected) {
        debug(`${namespace}: seconds until every child of a kind existed ${JSON.stringify(Object.fromEntries(complete))}`);
        resolve((performance.now() - t0) / 1000);
      }
    };
    for (const i of informers) i.onChange(check);
    setTimeout(() => reject(new Error(`only ${seen()}/${expected} children seen in ${namespace} after 120 s`)), 120_000).unref();
  });
  t0 = performance.now();
  await start();
  try { return await done; } finally { await Promise.all(informers.map((i) => i.stop())); }
}

type Pod = KubeObject & { spec?: { nodeName?: string }; status?: { conditions?: Array<{ type: string; status: string }> } };
const isTrue = (o: { status?: { conditions?: Array<{ type: string; status: string; reason?: string }> } }, type: string) =>
  o.status?.conditions?.some((c) => c.type === type && c.status === 'True') ?? false;

/** Polls until `done` says yes (it returns what is still missing otherwise); throws after 180 s. */
async function waitUntil(what: string, done: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const missing = await done();
    if (missing === undefined) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${missing} after 180 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The control plane's work for a phase is over: every pod made, scheduled and Ready (kwok marks them). */
async function waitPodsReady(client: KubeClient, namespace: string, expected: number): Promise<void> {
  await waitUntil(`pods in ${namespace}`, async () => {
    const pods = (await client.list<Pod>(RESOURCES.pods, namespace)).items;
    const ready = pods.filter((p) => p.spec?.nodeName && isTrue(p, 'Ready')).length;
    return ready >= expected ? undefined : `${pods.length} made, ${ready}/${expected} scheduled and Ready`;
  });
}

/** The operator's work for a phase is over: every job Ready with its bus provisioned, and no reconcile for 1 s. */
async function waitOperatorIdle(client: KubeClient, operator: OperatorProcess, namespace: string, count: number, suspended: boolean): Promise<void> {
  await waitUntil(`jobs in ${namespace}`, async () => {
    const jobs = (await client.list<KubeObject & { status?: { conditions?: Array<{ type: string; status: string; reason?: string }> } }>(RESOURCES.rljobs, namespace)).items;
    const done = jobs.filter((j) => (suspended || isTrue(j, 'Ready'))
      && j.status?.conditions?.some((c) => c.type === 'Progressing' && c.reason !== 'ProvisioningBus')).length;
    return done >= count ? undefined : `${done}/${count} jobs Ready with their bus provisioned`;
  });
  const activity = async () => (await httpGet(operator.port, '/metrics')).body.split('\n')
    .filter((l) => /^rlkube_operator_(reconcile_total|api_requests_total)/.test(l)).join('\n');
  let last = await activity();
  await waitUntil('the operator to go quiet', async () => {
    await new Promise((r) => setTimeout(r, 500));
    const now = await activity();
    if (now === last) return undefined;
    last = now;
    return 'still reconciling';
  });
}

/** Marks of this benchmark's own processes in /proc/<pid>/cmdline (its cluster's and NATS's directories). */
const ownMarks: string[] = [];
const ownPids = new Set<number>([process.pid]);

/**
 * CPU seconds used so far by every process, by command name, this benchmark's own ones apart from the
 * others on the machine ("other:" names): debugging where a phase's time goes.
 */
function cpuByCommand(): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const own = ownPids.has(Number(pid)) || (ownMarks.length > 0 && ownMarks.some((m) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(m)));
      const name = `${own ? '' : 'other:'}${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    } catch { /* gone */ }
  }
  return out;
}

/** CPU seconds a process has used (user + system). */
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const peakRssMb = (pid: number) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const debug = (text: string) => { if (process.env.RLKUBE_BENCH_DEBUG) process.stderr.write(`${text}\n`); };
/** CPU seconds this benchmark's own processes (control plane, NATS, operator, this one) used since `before`. */
const ownCpuSince = (before: Map<string, number>) =>
  [...cpuByCommand()].filter(([k]) => !k.startsWith('other:')).reduce((n, [k, v]) => n + v - (before.get(k) ?? 0), 0);
function debugCpu(phase: string, before: Map<string, number>): void {
  const used = [...cpuByCommand()].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0.05).sort((a, b) => b[1] - a[1]);
  debug(`CPU seconds during ${phase}: ${used.map(([k, v]) => `${k}=${v.toFixed(2)}`).join(' ')}`);
}

/**
 * One round's figures. *_cpu_s: CPU seconds of this benchmark's own processes during a phase (the machine
 * is shared: other processes' load stretches the times, hardly the work); operator_cpu_s: the operator's.
 */
interface Round { direct_s: number; operator_s: number; direct_cpu_s: number; operated_cpu_s: number; operator_cpu_s: number; rss_mb: number }

/**
 * Rounds of (direct, operated), interleaved, each phase in a namespace of its own, after the control plane
 * and the operator have finished the previous phase's work; the figures are the best of each. One operator
 * serves every round (as one would: long-lived, its caches holding the earlier rounds' jobs).
 *
 * Settings (environment): RLKUBE_BENCH_JOBS (default 50); RLKUBE_BENCH_ROUNDS (default 3);
 * RLKUBE_BENCH_SUSPENDED=1 (suspended jobs: no pods, the control plane's pod work out of the picture);
 * RLKUBE_BENCH_ARGS (extra operator flags, e.g. "--workers 64"); RLKUBE_BENCH_DEBUG=1 (per-kind completion
 * times, CPU by process, operator metrics).
 */
export async function run(): Promise<Record<string, number>> {
  const count = Number(process.env.RLKUBE_BENCH_JOBS ?? 50);
  const rounds = Number(process.env.RLKUBE_BENCH_ROUNDS ?? 3);
  const suspended = process.env.RLKUBE_BENCH_SUSPENDED === '1';
  // The operator runs as its image runs it: compiled JavaScript under plain node.
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'operator/tsconfig.build.json'], { cwd: REPO_ROOT, stdio: 'inherit' });
  // 2 phases × `count` learner pods + `count` rollout pods per round, 110 pods a node.
  const pods = suspended ? 0 : 2 * count;
  const [cp, nats] = await Promise.all([startControlPlane({ name: 'bench-operator', cpuNodes: Math.max(1, Math.ceil((2 * rounds * pods) / 100)) }), startNats({})]);
  ownMarks.push(path.dirname(cp.kubeconfig), nats.storeDir);
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  const client = new KubeClient(kc, { fieldManager: 'rlkube-bench' });
  let operator: OperatorProcess | undefined;
  const round = (r: number) => ({ direct: `direct-${r}`, operated: `operated-${r}` });
  const runs: Round[] = [];
  try {
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    for (let r = 1; r <= rounds; r++) for (const ns of Object.values(round(r))) await kube(cp, ['create', 'namespace', ns]);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(2 * rounds * count, '', 'bench-pv'));
    const config: BuildConfig = { images: { agent: 'agent:bench', trainer: 'trainer:bench', vllm: 'vllm:bench' }, natsUrl: nats.url };
    const typeOf = (o: KubeObject) => CHILD_TYPES.find((t) => t.kind === o.kind)!;
    const children = jobsIn('direct', count, suspended).flatMap((job) => childrenOf(job, config)).length;

    const extra = (process.env.RLKUBE_BENCH_ARGS ?? '').split(' ').filter(Boolean);
    const watched = Array.from({ length: rounds }, (_, i) => round(i + 1).operated).join(',');
    // A long lease: on a shared two-core machine the API server can stall for longer than the default renew
    // deadline (10 s), and a fenced operator then steps down (as it must); this measures reconciling, not failover.
    operator = await startOperator({ kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity: 'bench', compiled: true, args: ['--namespaces', watched, '--lease-duration', '60', ...extra] });
    while (!(await operator.leading())) await new Promise((r) => setTimeout(r, 100));
    ownPids.add(operator.child.pid!);

    // The same child objects, created directly by the same client, all at once.
    const directPhase = async (r: number, namespace: string): Promise<{ seconds: number; ownCpu: number }> => {
      const direct = jobsIn(namespace, count, suspended).flatMap((job) => childrenOf(job, config));
      const cpuBefore = cpuByCommand();
      const seconds = await timeUntilAllSeen(kc, client, namespace, direct.length, () => Promise.all(direct.map((o) => client.apply(typeOf(o), o))));
      const ownCpu = ownCpuSince(cpuBefore);
      debugCpu(`the direct creation (round ${r})`, cpuBefore);
      await waitPodsReady(client, namespace, pods); // let the control plane settle before the next phase
      return { seconds, ownCpu };
    };
    // The RLJobs, applied at once; the operator makes the children.
    const operatedPhase = async (r: number, namespace: string): Promise<{ seconds: number; cpu: number; ownCpu: number }> => {
      const jobs = jobsIn(namespace, count, suspended);
      const operatorCpuBefore = cpuSeconds(operator!.child.pid!);
      const cpuBefore = cpuByCommand();
      const started = performance.now();
      const seconds = await timeUntilAllSeen(kc, client, namespace, children, async () => {
        await Promise.all(jobs.map((j) => client.apply(RESOURCES.rljobs, j as unknown as KubeObject)));
        debug(`${namespace}: every RLJob applied after ${((performance.now() - started) / 1000).toFixed(3)} s`);
      });
      const cpu = cpuSeconds(operator!.child.pid!) - operatorCpuBefore;
      const ownCpu = ownCpuSince(cpuBefore);
      debugCpu(`the operator's creation (round ${r})`, cpuBefore);
      debug((await httpGet(operator!.port, '/metrics')).body.split('\n').filter((l) => /^rlkube_operator_(reconcile_total|api_requests_total)/.test(l)).join('\n'));
      await waitPodsReady(client, namespace, pods);
      await waitOperatorIdle(client, operator!, namespace, count, suspended);
      return { seconds, cpu, ownCpu };
    };

    for (let r = 1; r <= rounds; r++) {
      const ns = round(r);
      // Interleaved, and in turns first: neither phase always follows the other.
      let direct: { seconds: number; ownCpu: number };
      let operated: { seconds: number; cpu: number; ownCpu: number };
      if (r % 2 === 1) {
        direct = await directPhase(r, ns.direct);
        operated = await operatedPhase(r, ns.operated);
      } else {
        operated = await operatedPhase(r, ns.operated);
        direct = await directPhase(r, ns.direct);
      }
      const figures: Round = {
        direct_s: Number(direct.seconds.toFixed(3)), operator_s: Number(operated.seconds.toFixed(3)),
        direct_cpu_s: Number(direct.ownCpu.toFixed(2)), operated_cpu_s: Number(operated.ownCpu.toFixed(2)),
        operator_cpu_s: Number(operated.cpu.toFixed(2)), rss_mb: Math.round(peakRssMb(operator.child.pid!)),
      };
      runs.push(figures);
      console.log(`round ${r}/${rounds}: ${JSON.stringify({ ratio: Number((figures.operator_s / figures.direct_s).toFixed(2)), ...figures })}`);
    }
    const best = (k: keyof Round) => Math.min(...runs.map((f) => f[k]));
    return {
      jobs: count,
      rounds,
      ratio: Number((best('operator_s') / best('direct_s')).toFixed(2)),
      rss_mb: Math.round(peakRssMb(operator.child.pid!)),
      operator_s: best('operator_s'),
      direct_s: best('direct_s'),
      children,
      operator_cpu_s: best('operator_cpu_s'),
      // The same comparison in CPU seconds of this benchmark's processes: steadier on a shared machine.
      cpu_ratio: Number((best('operated_cpu_s') / best('direct_cpu_s')).toFixed(2)),
    };
  } catch (err) {
    if (operator) process.stderr.write(`operator log (tail):\n${operator.logs().slice(-5000)}\n`);
    throw err;
  } finally {
    await operator?.stop('SIGTERM');
    client.close();
    await Promise.all([cp.stop(), nats.stop()]);
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  run().then((figures) => console.log(JSON.stringify(figures)), (err: unknown) => { console.error(err); process.exit(1); });
}
