// The operator against a real control plane (etcd, kube-apiserver, controller-manager, scheduler; kwok nodes
// with nvidia.com/gpu) and a real nats-server. Invariants: bad manifests never reach the operator; every child
// of a job exists, is owned and lands where its GPUs are; status tells the truth (GPU shortage, suspension,
// learner progress); deleting a job leaves nothing behind, in Kubernetes or in NATS.
import type { V1Deployment, V1Pod, V1ReplicaSet, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Learner, RLJob, RolloutPool } from '../../api/index.js';
import { connectBus, ControlStore, jobProvisioned } from '../../bus/index.js';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';
import { startNats, type NatsServer } from '../harness/nats.js';
import { podOverrides } from '../harness/pod-overrides.js';
import {
  INVALID_CASES, baseJob, cpuJob, firstPool, kube, kubeJson, persistentVolumes, readExample, startOperator, type Live, type OperatorProcess,
} from '../harness/operator-fixtures.js';

const WAIT = { timeoutMs: 90_000, intervalMs: 500 };
const TEST_MS = 180_000;
/** What kubectl returns for each kind these checks read. */
interface Kinds {
  rljob: RLJob; rljobs: RLJob; learner: Learner; learners: Learner; rolloutpool: RolloutPool; rolloutpools: RolloutPool;
  deployment: Live<V1Deployment>; statefulset: Live<V1StatefulSet>; service: Live<V1Service>; pods: Live<V1Pod>; replicasets: Live<V1ReplicaSet>;
}
type Obj = Kinds[keyof Kinds];
interface WithConditions { status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> } }

describe('rlkube operator (e2e)', () => {
  let cp: ControlPlane;
  let nats: NatsServer;
  let operator: OperatorProcess;

  const get = <K extends keyof Kinds>(kind: K, name: string) => kubeJson<Kinds[K]>(cp, ['get', kind, name]);
  const list = async <K extends keyof Kinds>(kind: K, selector?: string) => (await kubeJson<{ items: Array<Kinds[K]> }>(cp, ['get', kind, ...(selector ? ['-l', selector] : [])])).items;
  const condition = (obj: WithConditions | undefined, type: string) => obj?.status?.conditions?.find((c) => c.type === type);
  const provisioned = async (name: string) => {
    const nc = await connectBus({ servers: nats.url });
    try { return await jobProvisioned(nc, { namespace: 'default', name }); } finally { await nc.close(); }
  };
  const waitCondition = <K extends 'rljob' | 'rolloutpool' | 'learner'>(kind: K, name: string, type: string, status: string, reason?: string) => pollUntil(async (observe) => {
    const obj = await get(kind, name);
    const c = condition(obj, type);
    observe(JSON.stringify(obj.status?.conditions ?? []));
    return c?.status === status && (reason === undefined || c.reason === reason) ? obj : undefined;
  }, { ...WAIT, what: `${kind} ${name} to have ${type}=${status}${reason ? ` (${reason})` : ''}` });

  beforeAll(async () => {
    [cp, nats] = await Promise.all([
      startControlPlane({
        name: 'operator-e2e',
        gpuNodes: [
          { name: 'gpu-a100-0', gpus: 4, labels: { 'rlkube.dev/gpu': 'a100' }, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] },
          { name: 'gpu-h100-0', gpus: 8, labels: { 'rlkube.dev/gpu': 'h100' } },
        ],
        cpuNodes: 1,
      }),
      startNats({}),
    ]);
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(8, '', 'pv-plain'));
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(4, 'standard', 'pv-standard'));
    operator = await startOperator({ kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity: 'operator-e2e-0' });
  }, 240_000);

  afterAll(async () => {
    await operator?.stop('SIGTERM');
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 120_000);

  test(`${INVALID_CASES.length} invalid manifests are refused by kubectl apply, each naming its field`, async () => {
    const refused: string[] = [];
    for (const c of INVALID_CASES) {
      const r = await cp.kubectl(['apply', '-f', '-'], JSON.stringify(c.mutate(baseJob(`bad-${refused.length}`))));
      expect({ case: c.name, code: r.code === 0 ? 0 : 1, namesField: r.stderr.includes(c.field) }).toEqual({ case: c.name, code: 1, namesField: true });
      refused.push(c.name);
    }
    expect(new Set(refused).size).toBeGreaterThanOrEqual(10);
    expect((await list('rljobs')).length).toBe(0);
  }, TEST_MS);

  test('sync.mode and managedBy are immutable', async () => {
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('immutable', 0, { suspend: true })));
    const mode = await cp.kubectl(['patch', 'rljob', 'immutable', '--type', 'merge', '-p', '{"spec":{"sync":{"mode":"AsyncPushPull"}}}']);
    expect(mode.code).not.toBe(0);
    expect(mode.stderr).toContain('spec.sync.mode');
    expect(mode.stderr).toContain('immutable');
    const managedBy = await cp.kubectl(['patch', 'rljob', 'immutable', '--type', 'merge', '-p', '{"spec":{"managedBy":"kueue.x-k8s.io/multikueue"}}']);
    expect(managedBy.code).not.toBe(0);
    expect(managedBy.stderr).toContain('spec.managedBy');
    await kube(cp, ['delete', 'rljob', 'immutable', '--wait=true', '--timeout=60s']);
  }, TEST_MS);

  test('CPU example: Learner, RolloutPool, Deployment, StatefulSet, Service appear, owned, and the pods run', async () => {
    await kube(cp, ['apply', '-f', '-'], readExample('reverse-cpu.yaml'));
    const job = await waitCondition('rljob', 'reverse-cpu', 'Ready', 'True', 'AllChildrenReady');
    const learner = await get('learner', 'reverse-cpu-learner');
    const pool = await get('rolloutpool', 'reverse-cpu-cpu');
    const owner = (o: Obj) => o.metadata.ownerReferences?.filter((r) => r.controller);
    expect(owner(learner)).toEqual([expect.objectContaining({ kind: 'RLJob', name: 'reverse-cpu', uid: job.metadata.uid })]);
    expect(owner(pool)).toEqual([expect.objectContaining({ kind: 'RLJob', name: 'reverse-cpu', uid: job.metadata.uid })]);
    expect(owner(await get('deployment', 'reverse-cpu-cpu'))).toEqual([expect.objectContaining({ kind: 'RolloutPool', uid: pool.metadata.uid })]);
    expect(owner(await get('statefulset', 'reverse-cpu-learner'))).toEqual([expect.objectContaining({ kind: 'Learner', uid: learner.metadata.uid })]);
    expect(owner(await get('service', 'reverse-cpu-learner'))).toEqual([expect.objectContaining({ kind: 'Learner', uid: learner.metadata.uid })]);
    const pods = await list('pods', 'rlkube.dev/job=reverse-cpu');
    expect(pods.map((p) => p.spec.containers.map((c: { name: string }) => c.name).join('+')).sort()).toEqual(['engine+environment+agent', 'engine+environment+agent', 'trainer+environment+agent']);
    expect(pods.every((p) => p.spec.nodeName && p.spec.securityContext?.runAsNonRoot === true)).toBe(true);
    expect(job.metadata).toMatchObject({ finalizers: ['rlkube.dev/nats'] });
    expect(job.status).toMatchObject({ readyPools: '1/1', summary: 'Running', progress: '0/150', observedGeneration: 1 });
    expect(await provisioned('reverse-cpu')).toBe(true);
  }, TEST_MS);

  test('GPU example: pods are scheduled onto the simulated GPU nodes with the GPUs asked', async () => {
    await kube(cp, ['apply', '-f', '-'], readExample('gsm8k-gpu.yaml'));
    await waitCondition('rljob', 'gsm8k-gpu', 'Ready', 'True');
    const pods = await list('pods', 'rlkube.dev/job=gsm8k-gpu');
    const gpusOf = (p: Kinds['pods']) => p.spec.containers.map((c) => Number(c.resources?.limits?.['nvidia.com/gpu'] ?? 0)).reduce((a, b) => a + b, 0);
    const rollout = pods.filter((p) => p.metadata.labels?.['rlkube.dev/role'] === 'rollout');
    const learner = pods.filter((p) => p.metadata.labels?.['rlkube.dev/role'] === 'learner');
    expect(rollout.map((p) => [p.spec.nodeName, gpusOf(p)])).toEqual([['gpu-a100-0', 1], ['gpu-a100-0', 1]]);
    expect(learner.map((p) => [p.spec.nodeName, gpusOf(p)])).toEqual([['gpu-h100-0', 2]]);
    const engine = rollout[0]!.spec.containers.find((c: { name: string }) => c.name === 'engine');
    expect(engine?.args).toEqual(expect.arrayContaining(['--model', 'Qwen/Qwen2.5-0.5B-Instruct', '--enable-lora']));
  }, TEST_MS);

  test('learner progress written to the job KV bucket appears in kubectl get rljobs', async () => {
    const nc = await connectBus({ servers: nats.url });
    try {
      const control = await ControlStore.open(nc, { namespace: 'default', name: 'reverse-cpu' });
      await control.putProgress({
        v: 1, step: 12, maxSteps: 150, state: 'Running', policyVersion: 12, reward: 0.4375,
        groups: { accepted: 384, stale: 3, rejected: 1, published: 388 }, rejectedByReason: { RewardMismatch: 1 }, updatedAt: new Date().toISOString(),
      });
    } finally { await nc.close(); }
    const row = await pollUntil(async (observe) => {
      const out = await kube(cp, ['get', 'rljobs', 'reverse-cpu', '--no-headers']);
      observe(out.trim());
      return /\s12\/150\s+12\s+0\.4375\s+1\/1\s+Running\s/.test(out) ? out : undefined;
    }, { ...WAIT, what: 'kubectl get rljobs to show step 12/150, policy 12, reward 0.4375' });
    expect(row).toContain('SequentialPull');
    const job = await get('rljob', 'reverse-cpu');
    expect(job.status?.groups).toEqual({ accepted: 384, stale: 3, rejected: 1, published: 388 });
    expect(condition(job, 'Progressing')).toMatchObject({ status: 'True', reason: 'Training' });
  }, TEST_MS);

  test('a pool asking more GPUs than any node has gets InsufficientGPU, and its job shows Degraded', async () => {
    const greedy = baseJob('greedy');
    greedy.spec.model = { name: 'Qwen/Qwen2.5-0.5B-Instruct' };
    greedy.spec.rollout.pools[0] = { name: 'huge', replicas: 1, engine: { kind: 'vllm', gpus: 16 } };
    greedy.spec.learner = { nodes: 1, gpusPerNode: 1 };
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(greedy));
    const pool = await waitCondition('rolloutpool', 'greedy-huge', 'Degraded', 'True', 'InsufficientGPU');
    expect(condition(pool, 'Degraded')?.message).toContain('Insufficient nvidia.com/gpu');
    const job = await waitCondition('rljob', 'greedy', 'Degraded', 'True', 'PoolInsufficientGPU');
    expect(job.status?.summary).toBe('Degraded');
    const events = await kubeJson<{ items: Array<{ reason: string }> }>(cp, ['get', 'events', '--field-selector', 'involvedObject.name=greedy-huge,involvedObject.kind=RolloutPool']);
    expect(events.items.map((e) => e.reason)).toContain('InsufficientGPU');
    await kube(cp, ['delete', 'rljob', 'greedy', '--wait=true', '--timeout=60s']);
  }, TEST_MS);

  test('an environment the operator can tell is unusable gets no pods and says why, naming the field; fixed, the job starts', async () => {
    const bad = baseJob('badenv');
    bad.spec.environment = { name: 'reverse', args: { minLength: 5, maxLength: 3, alphabet: 'abcd' } };
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(bad));
    const job = await waitCondition('rljob', 'badenv', 'Degraded', 'True', 'InvalidEnvironmentArgs');
    expect(condition(job, 'Degraded')?.message).toMatch(/^environment\.args\.minLength: /);
    expect(condition(job, 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidEnvironmentArgs' });
    expect(job.status?.summary).toBe('Degraded');
    expect(await list('learners', 'rlkube.dev/job=badenv')).toHaveLength(0);
    expect(await list('rolloutpools', 'rlkube.dev/job=badenv')).toHaveLength(0);
    const events = await kubeJson<{ items: Array<{ reason: string }> }>(cp, ['get', 'events', '--field-selector', 'involvedObject.name=badenv,involvedObject.kind=RLJob']);
    expect(events.items.map((e) => e.reason)).toContain('InvalidEnvironmentArgs');

    await kube(cp, ['patch', 'rljob', 'badenv', '--type=merge', '-p', JSON.stringify({ spec: { environment: { args: { minLength: 2, alphabet: '' } } } })]);
    const empty = await pollUntil(async (observe) => {
      const obj = await get('rljob', 'badenv');
      const message = condition(obj, 'Degraded')?.message ?? '';
      observe(message);
      return message.startsWith('environment.args.alphabet: ') ? obj : undefined;
    }, { ...WAIT, what: 'the empty alphabet named' });
    expect(condition(empty, 'Degraded')?.reason).toBe('InvalidEnvironmentArgs');

    await kube(cp, ['patch', 'rljob', 'badenv', '--type=merge', '-p', JSON.stringify({ spec: { environment: { args: { alphabet: 'abcd' } } } })]);
    await waitCondition('rljob', 'badenv', 'Degraded', 'False', 'AsExpected');
    await pollUntil(async () => ((await list('learners', 'rlkube.dev/job=badenv')).length === 1 || undefined), { ...WAIT, what: 'the learner of the fixed job' });
    await kube(cp, ['delete', 'rljob', 'badenv', '--wait=true', '--timeout=60s']);
  }, TEST_MS);

  test('suspend deletes the pods and keeps the NATS state; resume brings the same pods back', async () => {
    const replicaSetsBefore = (await list('replicasets', 'rlkube.dev/job=reverse-cpu')).map((r) => r.metadata.name);
    await kube(cp, ['patch', 'rljob', 'reverse-cpu', '--type', 'merge', '-p', '{"spec":{"suspend":true}}']);
    await waitCondition('rljob', 'reverse-cpu', 'Suspended', 'True', 'JobSuspended');
    await pollUntil(async (observe) => {
      const pods = await list('pods', 'rlkube.dev/job=reverse-cpu');
      observe(pods.map((p) => p.metadata.name).join(' '));
      return pods.length === 0;
    }, { ...WAIT, what: 'the pods of suspended job reverse-cpu to be deleted' });
    expect((await get('deployment', 'reverse-cpu-cpu')).spec.replicas).toBe(0);
    expect((await get('statefulset', 'reverse-cpu-learner')).spec.replicas).toBe(0);
    expect(await provisioned('reverse-cpu')).toBe(true);
    expect((await get('rljob', 'reverse-cpu')).status).toMatchObject({ summary: 'Suspended', step: 12 });

    await kube(cp, ['patch', 'rljob', 'reverse-cpu', '--type', 'merge', '-p', '{"spec":{"suspend":false}}']);
    await waitCondition('rljob', 'reverse-cpu', 'Ready', 'True');
    expect((await list('pods', 'rlkube.dev/job=reverse-cpu')).length).toBe(3);
    // the pod template did not change: suspend/resume must not roll every agent
    expect((await list('replicasets', 'rlkube.dev/job=reverse-cpu')).map((r) => r.metadata.name)).toEqual(replicaSetsBefore);
  }, TEST_MS);

  test('a second pool of other hardware joins the running job through spec.jobRef', async () => {
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'rlkube.dev/v1alpha1', kind: 'RolloutPool', metadata: { name: 'reverse-extra' },
      spec: { jobRef: { name: 'reverse-cpu' }, replicas: 2, engine: { kind: 'tiny', gpus: 1 }, nodeSelector: { 'rlkube.dev/gpu': 'h100' } },
    }));
    await waitCondition('rolloutpool', 'reverse-extra', 'Ready', 'True', 'AllReplicasReady');
    const pods = await list('pods', 'rlkube.dev/pool=reverse-extra');
    expect(pods.map((p) => p.spec.nodeName)).toEqual(['gpu-h100-0', 'gpu-h100-0']);
    const env = Object.fromEntries(pods[0]!.spec.containers.find((c) => c.name === 'agent')?.env?.map((e) => [e.name, e.value]) ?? []);
    expect(env).toMatchObject({ RLKUBE_JOB: 'reverse-cpu', RLKUBE_ROLE: 'rollout', RLKUBE_POOL: 'reverse-extra' });
    expect(JSON.parse(String(env.RLKUBE_JOB_SPEC)).algorithm).toEqual((await get('rljob', 'reverse-cpu')).spec.algorithm);
    const job = await pollUntil(async (observe) => {
      const j = await get('rljob', 'reverse-cpu');
      observe(String(j.status?.readyPools));
      return j.status?.readyPools === '2/2' ? j : undefined;
    }, { ...WAIT, what: 'reverse-cpu to count the joined pool (2/2 ready pools)' });
    expect((await get('rolloutpool', 'reverse-extra')).metadata.ownerReferences).toBeUndefined();
    expect(job.status?.summary).toBe('Running');
  }, TEST_MS);

  test('activeDeadlineSeconds fails the job (DeadlineExceeded), ttlSecondsAfterFinished then deletes it', async () => {
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('short', 1, { activeDeadlineSeconds: 3, ttlSecondsAfterFinished: 4 })));
    const failed = await waitCondition('rljob', 'short', 'Failed', 'True', 'DeadlineExceeded');
    expect(failed.status?.completionTime).toBeDefined();
    await pollUntil(async (observe) => {
      const r = await cp.kubectl(['get', 'rljob', 'short', '-o', 'name']);
      observe(r.stdout + r.stderr);
      return r.code !== 0 && r.stderr.includes('NotFound');
    }, { ...WAIT, what: 'job short to be deleted by its TTL' });
    expect(await provisioned('short')).toBe(false);
  }, TEST_MS);

  test('pod overrides of an RLJob reach its pools, learner and pods; the operator\'s names are refused; a volume the Pod API refuses shows as Degraded', async () => {
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [
      { apiVersion: 'scheduling.k8s.io/v1', kind: 'PriorityClass', metadata: { name: 'rl-high' }, value: 1000 },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'rl-runner', namespace: 'default' } },
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'model-cache', namespace: 'default' },
        spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', resources: { requests: { storage: '1Gi' } } } },
    ] }));
    const overrides = podOverrides();
    const m = cpuJob('overrides', 2);
    Object.assign(firstPool(m), overrides);
    Object.assign(m.spec.learner, overrides);
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(m));
    await waitCondition('rljob', 'overrides', 'Ready', 'True', 'AllChildrenReady');
    expect((await get('rolloutpool', 'overrides-cpu')).spec).toMatchObject(overrides);
    expect((await get('learner', 'overrides-learner')).spec).toMatchObject(overrides);
    const pods = await list('pods', 'rlkube.dev/job=overrides');
    expect(pods.map((p) => p.spec.containers.map((c: { name: string }) => c.name).join('+')).sort()).toEqual(['engine+environment+agent', 'engine+environment+agent', 'trainer+environment+agent']);
    for (const p of pods) {
      // the required node affinity, honoured by the real scheduler (without it a CPU pod may land on cpu-0)
      expect({ pod: p.metadata.name, node: p.spec.nodeName }).toEqual({ pod: p.metadata.name, node: 'gpu-h100-0' });
      expect(p.spec).toMatchObject({
        priorityClassName: 'rl-high', priority: 1000, serviceAccountName: 'rl-runner', automountServiceAccountToken: false,
        imagePullSecrets: overrides.imagePullSecrets, affinity: overrides.affinity,
      });
      expect(p.spec.volumes).toContainEqual(overrides.volumes[0]);
      for (const c of p.spec.containers) {
        expect({ container: c.name, env: c.env?.slice(-3) }).toEqual({ container: c.name, env: overrides.env });
        expect(c.envFrom).toEqual(overrides.envFrom);
        expect(c.volumeMounts).toContainEqual(overrides.volumeMounts[0]);
      }
    }

    // A standalone pool or learner is held to the same rules as the job's templates.
    const pool = await cp.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'rlkube.dev/v1alpha1', kind: 'RolloutPool', metadata: { name: 'overrides-extra' },
      spec: { jobRef: { name: 'overrides' }, engine: { kind: 'tiny' }, volumeMounts: [{ name: 'policies', mountPath: '/data' }] },
    }));
    expect({ code: pool.code === 0 ? 0 : 1, namesField: pool.stderr.includes('spec.volumeMounts') }).toEqual({ code: 1, namesField: true });
    const learner = await cp.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'rlkube.dev/v1alpha1', kind: 'Learner', metadata: { name: 'overrides-extra' },
      spec: { jobRef: { name: 'overrides' }, env: [{ name: 'WORLD_SIZE', value: '64' }] },
    }));
    expect({ code: learner.code === 0 ? 0 : 1, namesField: learner.stderr.includes('spec.env[0].name') }).toEqual({ code: 1, namesField: true });

    // Volume sources are checked by the Pod API when the Deployment is written: the pool says why it was refused.
    const bad = cpuJob('overrides-bad', 1);
    Object.assign(firstPool(bad), { volumes: [{ name: 'cache', persistentVolumeClaim: {} }], volumeMounts: overrides.volumeMounts });
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(bad));
    const rejected = await waitCondition('rolloutpool', 'overrides-bad-cpu', 'Degraded', 'True', 'DeploymentRejected');
    expect(condition(rejected, 'Degraded')?.message).toContain('persistentVolumeClaim.claimName');
    await waitCondition('rljob', 'overrides-bad', 'Degraded', 'True', 'PoolDegraded');
    await kube(cp, ['delete', 'rljob', 'overrides', 'overrides-bad', '--wait=true', '--timeout=60s']);
    await kube(cp, ['delete', 'pvc/model-cache', 'serviceaccount/rl-runner', 'priorityclass/rl-high', '--wait=false']);
  }, TEST_MS);

  test('deleting an RLJob removes its children (garbage collector) and its NATS resources (finalizer)', async () => {
    expect(await provisioned('gsm8k-gpu')).toBe(true);
    await kube(cp, ['delete', 'rljob', 'gsm8k-gpu', 'reverse-cpu', '--wait=true', '--timeout=60s']);
    await pollUntil(async (observe) => {
      const left = (await kube(cp, ['get', 'learners,rolloutpools,deployments,statefulsets,services,pods', '-l', 'rlkube.dev/job in (gsm8k-gpu,reverse-cpu)', '-o', 'name'])).trim();
      observe(left);
      // the joined pool is not the job's: it stays (without pods), the rest is gone
      return left.split('\n').filter((l) => l && !l.includes('reverse-extra')).length === 0;
    }, { ...WAIT, what: 'the children of the deleted jobs to be garbage-collected' });
    expect(await provisioned('gsm8k-gpu')).toBe(false);
    expect(await provisioned('reverse-cpu')).toBe(false);
    await waitCondition('rolloutpool', 'reverse-extra', 'Degraded', 'True', 'JobNotFound');
    expect(operator.child.exitCode).toBeNull();
  }, TEST_MS);
});
