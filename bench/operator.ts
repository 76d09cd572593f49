// Benchmark (`npm run bench -- operator`): N RLJobs applied at once → time until every child exists
// (Learner, RolloutPool, Deployment, StatefulSet, Service), against the same client creating the same child
// objects directly; plus the operator's peak RSS (it runs as a child process, as in its pod).
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { parseRLJobSpec, type RLJob } from '../api/index.js';
import type { BuildConfig } from '../operator/controllers/builders.js';
import { buildLearnerService, buildStatefulSet } from '../operator/controllers/learner.js';
import { buildLearner, buildPools } from '../operator/controllers/rljob.js';
import { buildDeployment } from '../operator/controllers/rolloutpool.js';
import { KubeClient, RESOURCES, type KubeObject, type ResourceType } from '../operator/kube/client.js';
import { Informer } from '../operator/kube/informer.js';
import { startControlPlane } from '../test/harness/kube.js';
import { startNats } from '../test/harness/nats.js';
import { cpuJob, kube, persistentVolumes, startOperator } from '../test/e2e/operator-fixtures.js';

const CHILD_TYPES: ResourceType[] = [RESOURCES.learners, RESOURCES.rolloutpools, RESOURCES.deployments, RESOURCES.statefulsets, RESOURCES.services];
const log = pino({ level: 'silent' });

function jobsIn(namespace: string, count: number): RLJob[] {
  return Array.from({ length: count }, (_, i) => {
    const m = cpuJob(`bench-${i}`, 1);
    return { ...m, metadata: { name: m.metadata.name, namespace }, spec: parseRLJobSpec(m.spec) } as RLJob;
  });
}

/** What the operator would make for a job, made by hand (no owner: there is no RLJob in this namespace). */
function childrenOf(job: RLJob, config: BuildConfig): KubeObject[] {
  const unowned = <T extends KubeObject>(o: T): T => ({ ...o, metadata: { ...o.metadata, ownerReferences: undefined } });
  const served = <T extends KubeObject>(o: T) => ({ ...o, metadata: { ...o.metadata, uid: 'none' }, spec: { ...(o as any).spec, suspend: false } }) as any;
  const learner = buildLearner(job);
  const pools = buildPools(job);
  return [
    learner, ...pools,
    ...pools.map((p) => buildDeployment(served(p), job, config)),
    buildStatefulSet(served(learner), job, config), buildLearnerService(served(learner)),
  ].map(unowned);
}

/** Resolves with the seconds from `start()` until `expected` children are seen by a watch in `namespace`. */
async function timeUntilAllSeen(kc: KubeConfig, client: KubeClient, namespace: string, expected: number, start: () => Promise<unknown>): Promise<number> {
  const informers = CHILD_TYPES.map((t) => new Informer<KubeObject>(kc, client, t, [namespace], log));
  await Promise.all(informers.map((i) => i.start()));
  await Promise.all(informers.map((i) => i.synced));
  const seen = () => informers.reduce((n, i) => n + i.list(namespace).length, 0);
  let t0 = 0;
  const done = new Promise<number>((resolve, reject) => {
    const check = () => { if (t0 && seen() >= expected) resolve((performance.now() - t0) / 1000); };
    for (const i of informers) i.onChange(check);
    setTimeout(() => reject(new Error(`only ${seen()}/${expected} children seen in ${namespace} after 300 s`)), 300_000).unref();
  });
  t0 = performance.now();
  await start();
  try { return await done; } finally { await Promise.all(informers.map((i) => i.stop())); }
}

async function waitPodsScheduled(client: KubeClient, namespace: string, expected: number): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const pods = (await client.list<KubeObject & { spec?: { nodeName?: string } }>(RESOURCES.pods, namespace)).items;
    if (pods.filter((p) => p.spec?.nodeName).length >= expected) return;
    if (Date.now() > deadline) throw new Error(`pods in ${namespace}: ${pods.length} made, fewer than ${expected} scheduled`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const peakRssMb = (pid: number) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

export async function run(): Promise<Record<string, number>> {
  const count = Number(process.env.RLKUBE_BENCH_JOBS ?? 50);
  const [cp, nats] = await Promise.all([startControlPlane({ name: 'bench-operator', cpuNodes: 3 }), startNats({})]);
  const client = (() => { const kc = new KubeConfig(); kc.loadFromFile(cp.kubeconfig); return { kc, client: new KubeClient(kc) }; })();
  let operator: Awaited<ReturnType<typeof startOperator>> | undefined;
  try {
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kube(cp, ['create', 'namespace', 'direct']);
    await kube(cp, ['create', 'namespace', 'operated']);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(2 * count, '', 'bench-pv'));
    const config: BuildConfig = { images: { agent: 'agent:bench', trainer: 'trainer:bench', vllm: 'vllm:bench' }, natsUrl: nats.url };

    // 1. the same child objects, created directly by the same client, all at once
    const direct = jobsIn('direct', count).flatMap((job) => childrenOf(job, config));
    const typeOf = (o: KubeObject) => CHILD_TYPES.find((t) => t.kind === o.kind)!;
    const directS = await timeUntilAllSeen(client.kc, client.client, 'direct', direct.length,
      () => Promise.all(direct.map((o) => client.client.apply(typeOf(o), o))));
    await waitPodsScheduled(client.client, 'direct', 2 * count); // let the control plane settle before phase 2

    // 2. the RLJobs, applied at once; the operator makes the children
    operator = await startOperator({ kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity: 'bench', args: ['--namespaces', 'operated', '--lease-namespace', 'operated'] });
    while (!(await operator.leading())) await new Promise((r) => setTimeout(r, 100));
    const jobs = jobsIn('operated', count);
    const operatorS = await timeUntilAllSeen(client.kc, client.client, 'operated', direct.length,
      () => Promise.all(jobs.map((j) => client.client.apply(RESOURCES.rljobs, j as unknown as KubeObject))));
    await waitPodsScheduled(client.client, 'operated', 2 * count);
    const rss = peakRssMb(operator.child.pid!);
    return {
      jobs: count,
      ratio: Number((operatorS / directS).toFixed(2)),
      rss_mb: Math.round(rss),
      operator_s: Number(operatorS.toFixed(3)),
      direct_s: Number(directS.toFixed(3)),
      children: direct.length,
    };
  } finally {
    await operator?.stop('SIGTERM');
    client.client.close();
    await Promise.all([cp.stop(), nats.stop()]);
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  run().then((figures) => console.log(JSON.stringify(figures)), (err: unknown) => { console.error(err); process.exit(1); });
}
