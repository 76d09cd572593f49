// The test cluster's real node (test/harness/node.ts): pods scheduled onto it really start from images built
// offline (test/harness/images.ts), pass real probes, reach Services by name through CoreDNS and kube-proxy, and
// mount PersistentVolumes; GPU pods still land on the simulated nodes. Invariant: what the cluster reports about a
// pod on the real node is what happened to a process.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { V1PersistentVolumeClaim, V1Pod, V1Service } from '@kubernetes/client-node';
import type { Learner, RLJob, RolloutPool } from '../../api/index.js';
import { connectBus, jobProvisioned } from '../../bus/index.js';
import { TEST_BASES } from '../harness/images.js';
import { pollUntil, type ControlPlane } from '../harness/kube.js';
import type { Live } from '../harness/operator-fixtures.js';
import { installRlkube, kube, kubeJson, reverseJob, startRealCluster } from '../harness/rlkube-cluster.js';

type Pod = Live<V1Pod>;

const WAIT = { timeoutMs: 120_000, intervalMs: 500 };
const JOB_WAIT = { timeoutMs: 600_000, intervalMs: 1_000 };
const JOB = 'reverse-real';

describe('real node (e2e)', () => {
  let cp: ControlPlane;

  beforeAll(async () => {
    cp = await startRealCluster('realnode');
  }, 900_000);
  afterAll(async () => {
    await cp?.stop();
  }, 180_000);

  test('a pod starts, passes its probe, reaches a Service by name and writes to a bound PersistentVolumeClaim', async () => {
    await kube(cp, ['apply', '-f', '-'], cp.realNode!.persistentVolumes('web-data', 1, 'manual', '1Gi'));
    const pvDir = path.join(cp.realNode!.dir, 'pv', 'web-data-0');
    const server = [
      "const http = require('node:http'), fs = require('node:fs');",
      "fs.writeFileSync('/data/written-by-pod', process.env.HOSTNAME);",
      "http.createServer((req, res) => res.end('hello from ' + process.env.HOSTNAME)).listen(8080, '0.0.0.0');",
    ].join(' ');
    const client = [
      "const dns = require('node:dns');",
      "dns.lookup('web', (err, addr) => { if (err) { console.error(err.message); process.exit(2); }",
      "  fetch('http://web/').then((r) => r.text()).then((t) => { console.log(JSON.stringify({ addr, body: t })); },",
      "    (e) => { console.error(String(e)); process.exit(3); }); });",
    ].join(' ');
    const manifests = [
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'web-data', namespace: 'default' },
        spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'manual', resources: { requests: { storage: '1Gi' } } } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } },
        spec: {
          securityContext: { runAsNonRoot: true, runAsUser: 1000 },
          containers: [{
            name: 'web', image: TEST_BASES.node, imagePullPolicy: 'Never', command: ['node', '-e', server],
            ports: [{ containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
          }],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'web-data' } }],
        } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' },
        spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } },
    ];
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }));

    await pollUntil(async (observe) => {
      const pod = await kubeJson<Pod>(cp, ['get', 'pod', 'web']);
      observe(JSON.stringify(pod.status?.conditions ?? pod.status?.phase ?? {}));
      return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && pod;
    }, { ...WAIT, what: 'pod web to pass its readiness probe' });
    const web = await kubeJson<Pod>(cp, ['get', 'pod', 'web']);
    expect(web.spec.nodeName).toBe('real-0');
    expect(web.status?.podIP).toMatch(/^10\.244\.0\./);
    expect((await kubeJson<V1PersistentVolumeClaim>(cp, ['get', 'pvc', 'web-data'])).status?.phase).toBe('Bound');
    expect(existsSync(path.join(pvDir, 'written-by-pod'))).toBe(true);

    const clientPod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', namespace: 'default' },
      spec: { restartPolicy: 'Never', securityContext: { runAsNonRoot: true, runAsUser: 1000 },
        containers: [{ name: 'client', image: TEST_BASES.node, imagePullPolicy: 'Never', command: ['node', '-e', client] }] } };
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(clientPod));
    const phase = await pollUntil(async (observe) => {
      const phase = (await kubeJson<Pod>(cp, ['get', 'pod', 'client'])).status?.phase;
      observe(phase ?? '');
      return (phase === 'Succeeded' || phase === 'Failed') && phase;
    }, { ...WAIT, what: 'pod client to finish' });
    const logs = await kube(cp, ['logs', 'client']);
    expect({ phase, logs }).toMatchObject({ phase: 'Succeeded' });
    const service = await kubeJson<Live<V1Service>>(cp, ['get', 'service', 'web']);
    expect(JSON.parse(logs.trim())).toEqual({ addr: service.spec.clusterIP, body: 'hello from web' });
  });

  test('GPU pods go to the simulated GPU nodes, CPU pods to the real node', async () => {
    const pod = (name: string, gpus: number) => ({
      apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' },
      spec: {
        containers: [{ name: 'c', image: TEST_BASES.node, imagePullPolicy: 'Never', command: ['sleep', '3600'],
          ...(gpus > 0 ? { resources: { limits: { 'nvidia.com/gpu': String(gpus) } } } : {}) }],
        ...(gpus > 0 ? { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] } : {}),
      },
    });
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pod('gpu-user', 1), pod('cpu-user', 0)] }));
    for (const [name, node] of [['gpu-user', 'gpu-0'], ['cpu-user', 'real-0']] as const) {
      const p = await pollUntil(async (observe) => {
        const got = await kubeJson<Pod>(cp, ['get', 'pod', name]);
        observe(`${got.spec.nodeName ?? '-'} ${got.status?.phase}`);
        return got.status?.phase === 'Running' && got;
      }, { ...WAIT, what: `pod ${name} to be Running` });
      expect(p.spec.nodeName).toBe(node);
    }
    // The CPU pod is a process: its container is one of the real node's containerd containers.
    const containers = cp.realNode!.ctr(['containers', 'ls', '--quiet']).stdout.split('\n').filter(Boolean);
    const cpuPod = await kubeJson<Pod>(cp, ['get', 'pod', 'cpu-user']);
    expect(containers).toContain(String(cpuPod.status?.containerStatuses?.[0]?.containerID).replace('containerd://', ''));
  });

  test('the chart\'s operator and a NATS pod train an RLJob to Succeeded on the real node, through a rollout and a learner pod deletion', async () => {
    await installRlkube(cp);
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(reverseJob(JOB, 12)));

    // step, reward and ready pools as `kubectl get rljobs` shows them, until the first steps are trained
    const seen = new Set<string>();
    const status = async () => (await kubeJson<RLJob>(cp, ['get', 'rljob', JOB])).status ?? {};
    const untilStep = (n: number) => pollUntil(async (observe) => {
      const st = await status();
      const row = (await kube(cp, ['get', 'rljobs', JOB, '--no-headers'])).trim().replace(/\s+/g, ' ');
      seen.add(row);
      observe(row);
      return (st.step ?? 0) >= n && st;
    }, { ...JOB_WAIT, what: `job ${JOB} to reach step ${n}` });
    await untilStep(2);
    // every pod of the job passes its real probes (engine /health on the pod IP, trainer /health), and the pools
    // and the learner say Ready
    const isReady = (o: { status?: { conditions?: Array<{ type: string; status: string }> } }) => o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    const pods = await pollUntil(async (observe) => {
      const items = (await kubeJson<{ items: Pod[] }>(cp, ['get', 'pods', '-l', `rlkube.dev/job=${JOB}`])).items;
      observe(items.map((p) => `${p.metadata.name}:${isReady(p) ? 'Ready' : p.status?.phase}`).join(' '));
      return items.length === 3 && items.every(isReady) && items;
    }, { ...WAIT, what: `the 3 pods of job ${JOB} (2 rollout, 1 learner) to be Ready` });
    expect(pods.map((p) => p.spec.nodeName)).toEqual(pods.map(() => 'real-0'));
    for (const kind of ['rolloutpool', 'learner']) {
      await pollUntil(async (observe) => {
        const items = (await kubeJson<{ items: Array<RolloutPool | Learner> }>(cp, ['get', kind, '-l', `rlkube.dev/job=${JOB}`])).items;
        observe(JSON.stringify(items.map((o) => o.status?.conditions)));
        return items.length === 1 && items.every(isReady);
      }, { ...WAIT, what: `the ${kind} of job ${JOB} to be Ready` });
    }
    // every container of ours logs JSON, line by line (nats-server's own log is not ours)
    const [operatorPod] = (await kubeJson<{ items: Pod[] }>(cp, ['get', 'pods', '-n', 'rlkube-system', '-l', 'app.kubernetes.io/name=rlkube-operator'])).items;
    const logged: Array<[string, string, string]> = [
      ['rlkube-system', String(operatorPod?.metadata.name), 'operator'],
      ...pods.flatMap((p) => p.spec.containers.map((c): [string, string, string] => ['default', String(p.metadata.name), c.name])),
    ];
    for (const [ns, pod, container] of logged) {
      const lines = (await kube(cp, ['logs', '-n', ns, pod, '-c', container])).split('\n').filter((l) => l.trim());
      expect(lines.length).toBeGreaterThan(0);
      const notJson = lines.filter((l) => { try { JSON.parse(l); return false; } catch { return true; } });
      expect({ pod, container, notJson: notJson.slice(0, 3) }).toEqual({ pod, container, notJson: [] });
    }

    // faults: a rollout pod, then the learner pod, deleted while the job trains
    const rollout = pods.find((p) => p.metadata.labels?.['rlkube.dev/role'] === 'rollout')!;
    await kube(cp, ['delete', 'pod', String(rollout.metadata.name), '--wait=false']);
    const atDelete = (await status()).step ?? 0;
    await untilStep(atDelete + 2);
    const learner = pods.find((p) => p.metadata.labels?.['rlkube.dev/role'] === 'learner')!;
    await kube(cp, ['delete', 'pod', String(learner.metadata.name), '--wait=false']);

    const done = await pollUntil(async (observe) => {
      const st = await status();
      const row = (await kube(cp, ['get', 'rljobs', JOB, '--no-headers'])).trim().replace(/\s+/g, ' ');
      seen.add(row);
      observe(`${row} ${JSON.stringify(st.conditions ?? [])}`);
      return st.conditions?.some((c) => (c.type === 'Succeeded' || c.type === 'Failed') && c.status === 'True') && st;
    }, { ...JOB_WAIT, what: `job ${JOB} to finish` });
    expect(done.conditions?.find((c) => c.type === 'Succeeded')?.status).toBe('True');
    expect(done.step).toBe(12);
    const g = done.groups;
    expect(g && g.accepted + g.stale + g.rejected + (g.leftOver ?? Number.NaN)).toBe(g?.published);
    expect(g?.accepted).toBeGreaterThan(0);
    // the printer columns moved: several distinct step/reward rows were seen on the way
    expect(seen.size).toBeGreaterThan(2);
    expect([...seen].at(-1)).toContain('Succeeded');
  });

  test('deleting the job leaves nothing of it in Kubernetes or NATS', async () => {
    const svc = await kubeJson<Live<V1Service>>(cp, ['get', 'service', 'nats', '-n', 'rlkube-system']);
    const natsUrl = `nats://${svc.spec.clusterIP}:4222`; // this machine reaches ClusterIPs through kube-proxy's rules
    const provisioned = async () => {
      const nc = await connectBus({ servers: natsUrl });
      try { return await jobProvisioned(nc, { namespace: 'default', name: JOB }); } finally { await nc.close(); }
    };
    expect(await provisioned()).toBe(true);
    await kube(cp, ['delete', 'rljob', JOB, '--wait=true', '--timeout=120s']);
    await pollUntil(async (observe) => {
      const left = (await kube(cp, ['get', 'all,pvc,configmaps,secrets,learners,rolloutpools', '-l', `rlkube.dev/job=${JOB}`, '-o', 'name'])).trim();
      observe(left);
      return left === '';
    }, { ...WAIT, what: `the children of job ${JOB} to be deleted` });
    expect(await provisioned()).toBe(false);
  });
});
