// Invariant: the real scheduler places GPU pods on simulated GPU nodes, and the real controller manager runs
// (deployment/replicaset controllers, garbage collector). The control plane is etcd + kube-apiserver +
// kube-controller-manager + kube-scheduler from the pinned toolchain, with kwok simulating the nodes.
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';

const START_TIMEOUT_MS = 180_000;
const WAIT_MS = 60_000;

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: { phase?: string; conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

function gpuPod(name: string, gpus: number): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: {
      containers: [
        {
          name: 'main',
          image: 'registry.k8s.io/pause:3.10', // never pulled: kwok fakes the node
          resources: { limits: { 'nvidia.com/gpu': String(gpus) } },
        },
      ],
    },
  });
}

describe('control plane (kwok binary runtime)', () => {
  let cp: ControlPlane | undefined;
  const gpusByNode: Record<string, number> = { 'gpu-a': 4, 'gpu-b': 8 };

  async function kube(args: string[], input?: string): Promise<string> {
    const r = await cp!.kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }
  async function getPod(name: string): Promise<PodJson> {
    return JSON.parse(await kube(['get', 'pod', name, '-n', 'default', '-o', 'json'])) as PodJson;
  }
  function waitRunning(name: string): Promise<PodJson> {
    return pollUntil(
      async (observe) => {
        const pod = await getPod(name);
        observe(`phase=${pod.status.phase} node=${pod.spec.nodeName ?? '-'} ${JSON.stringify(pod.status.conditions ?? [])}`);
        return pod.spec.nodeName && pod.status.phase === 'Running' ? pod : undefined;
      },
      { timeoutMs: WAIT_MS, what: `pod ${name} to be scheduled and Running` },
    );
  }

  beforeAll(async () => {
    cp = await startControlPlane({
      name: 'controlplane-e2e',
      gpuNodes: [
        { name: 'gpu-a', gpus: gpusByNode['gpu-a']!, labels: { 'rlkube.dev/gpu': 'a' } },
        { name: 'gpu-b', gpus: gpusByNode['gpu-b']!, taints: [] },
      ],
      cpuNodes: 1,
    });
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    await cp?.stop();
  }, WAIT_MS);

  test('exposes a kubeconfig and an https server', async () => {
    expect(cp!.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const nodes = JSON.parse(await kube(['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ metadata: { name: string; labels: Record<string, string> }; status: { allocatable: Record<string, string> } }>;
    };
    const gpu = Object.fromEntries(nodes.items.map((n) => [n.metadata.name, n.status.allocatable['nvidia.com/gpu'] ?? '0']));
    expect(gpu).toEqual({ 'gpu-a': '4', 'gpu-b': '8', 'cpu-0': '0' });
    expect(nodes.items.find((n) => n.metadata.name === 'gpu-a')!.metadata.labels).toMatchObject({ type: 'kwok', 'rlkube.dev/gpu': 'a' });
  });

  test('the real scheduler places GPU pods only where enough GPUs are free, and kwok runs them', async () => {
    // 6 GPUs fit only gpu-b (8); that leaves gpu-b 2 free, so the 4-GPU pod must go to gpu-a.
    await kube(['apply', '-f', '-'], gpuPod('gpu6', 6));
    const six = await waitRunning('gpu6');
    expect(six.spec.nodeName).toBe('gpu-b');

    await kube(['apply', '-f', '-'], gpuPod('gpu4', 4));
    const four = await waitRunning('gpu4');
    expect(gpusByNode[four.spec.nodeName!]).toBeGreaterThanOrEqual(4);
    expect(four.spec.nodeName).toBe('gpu-a');
  }, 2 * WAIT_MS);

  test('a pod asking more GPUs than any node has stays Pending with FailedScheduling naming nvidia.com/gpu', async () => {
    await kube(['apply', '-f', '-'], gpuPod('gpu16', 16));
    const cond = await pollUntil(
      async (observe) => {
        const pod = await getPod('gpu16');
        const c = pod.status.conditions?.find((x) => x.type === 'PodScheduled');
        observe(JSON.stringify(pod.status));
        return c?.status === 'False' ? c : undefined;
      },
      { timeoutMs: WAIT_MS, what: 'pod gpu16 to get PodScheduled=False' },
    );
    expect(cond.reason).toBe('Unschedulable');
    expect(cond.message).toContain('nvidia.com/gpu');

    const event = await pollUntil(
      async (observe) => {
        const events = JSON.parse(
          await kube(['get', 'events', '-n', 'default', '--field-selector', 'involvedObject.name=gpu16,reason=FailedScheduling', '-o', 'json']),
        ) as { items: Array<{ reason: string; message: string }> };
        observe(`${events.items.length} FailedScheduling events`);
        return events.items[0];
      },
      { timeoutMs: WAIT_MS, what: 'a FailedScheduling event for pod gpu16' },
    );
    expect(event.message).toContain('Insufficient nvidia.com/gpu');

    const pod = await getPod('gpu16');
    expect(pod.status.phase).toBe('Pending');
    expect(pod.spec.nodeName).toBeUndefined();
  }, 2 * WAIT_MS);

  test('the controller manager runs deployments, and the garbage collector removes what they own', async () => {
    await kube(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: 'default' },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { containers: [{ name: 'main', image: 'registry.k8s.io/pause:3.10' }] },
          },
        },
      }),
    );
    const running = await pollUntil(
      async (observe) => {
        const pods = (JSON.parse(await kube(['get', 'pods', '-n', 'default', '-l', 'app=web', '-o', 'json'])) as { items: PodJson[] }).items;
        observe(pods.map((p) => `${p.metadata.name}:${p.status.phase}@${p.spec.nodeName ?? '-'}`).join(' '));
        const ok = pods.filter((p) => p.status.phase === 'Running' && p.spec.nodeName);
        return ok.length === 2 ? ok : undefined;
      },
      { timeoutMs: WAIT_MS, what: 'deployment web to have 2 Running pods' },
    );
    expect(running).toHaveLength(2);
    const rs = JSON.parse(await kube(['get', 'replicasets', '-n', 'default', '-l', 'app=web', '-o', 'json'])) as { items: unknown[] };
    expect(rs.items).toHaveLength(1);

    await kube(['delete', 'deployment', 'web', '-n', 'default', '--wait=false']);
    await pollUntil(
      async (observe) => {
        const left = (await kube(['get', 'replicasets,pods', '-n', 'default', '-l', 'app=web', '-o', 'name'])).trim();
        observe(left || 'nothing');
        return left === '';
      },
      { timeoutMs: WAIT_MS, what: 'the garbage collector to delete the ReplicaSet and pods of deployment web' },
    );
  }, 3 * WAIT_MS);

  test('the statefulset controller creates ordered pods that kwok makes Ready', async () => {
    await kube(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'learner', namespace: 'default' },
        spec: {
          replicas: 2,
          serviceName: 'learner',
          selector: { matchLabels: { app: 'learner' } },
          template: {
            metadata: { labels: { app: 'learner' } },
            spec: {
              containers: [{ name: 'main', image: 'registry.k8s.io/pause:3.10', resources: { limits: { 'nvidia.com/gpu': '1' } } }],
            },
          },
        },
      }),
    );
    // OrderedReady: learner-1 is only created once learner-0 is Running and Ready.
    await pollUntil(
      async (observe) => {
        const sts = JSON.parse(await kube(['get', 'statefulset', 'learner', '-n', 'default', '-o', 'json'])) as {
          status: { readyReplicas?: number };
        };
        observe(JSON.stringify(sts.status));
        return sts.status.readyReplicas === 2;
      },
      { timeoutMs: WAIT_MS, what: 'statefulset learner to have 2 ready replicas' },
    );
    const pods = await Promise.all(['learner-0', 'learner-1'].map((n) => getPod(n)));
    for (const p of pods) expect(p.spec.nodeName).toMatch(/^gpu-/);
    await kube(['delete', 'statefulset', 'learner', '-n', 'default', '--wait=false']);
  }, 2 * WAIT_MS);

  test('stop() deletes the cluster, frees its port and removes its temp dir; a second stop() is a no-op', async () => {
    const { kubeconfig, server } = cp!;
    await cp!.stop();
    await cp!.stop();
    expect(existsSync(path.dirname(kubeconfig))).toBe(false);
    const port = Number(new URL(server).port);
    const open = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    expect(open).toBe(false);
  }, WAIT_MS);
});
