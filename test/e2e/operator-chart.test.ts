// The Helm chart against a real control plane: it installs (CRDs from the chart's crds/), and the RBAC it
// grants is enough: the operator, run with the chart's ServiceAccount token, reconciles a job end to end
// (children, status, events, lease, finalizer) without one "forbidden".
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { pollUntil, startControlPlane, toolchainBinDir, type ControlPlane } from '../harness/kube.js';
import { startNats, type NatsServer } from '../harness/nats.js';
import { REPO_ROOT, cpuJob, kube, kubeJson, persistentVolumes, startOperator, type OperatorProcess } from './operator-fixtures.js';

const WAIT = { timeoutMs: 90_000, intervalMs: 500 };

describe('Helm chart rlkube-operator (e2e)', () => {
  let cp: ControlPlane;
  let nats: NatsServer;
  let operator: OperatorProcess | undefined;
  const saKubeconfig = join(tmpdir(), `rlkube-chart-sa-${process.pid}.kubeconfig`);

  beforeAll(async () => {
    [cp, nats] = await Promise.all([startControlPlane({ name: 'operator-chart', cpuNodes: 1 }), startNats({})]);
  }, 240_000);
  afterAll(async () => {
    await operator?.stop('SIGTERM');
    rmSync(saKubeconfig, { force: true });
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 120_000);

  test('installs, and its ServiceAccount may do everything the operator does', async () => {
    const helm = spawnSync(join(toolchainBinDir(), 'helm'), ['install', 'rlkube', 'charts/rlkube-operator', '--namespace', 'rlkube-system', '--create-namespace',
      '--kubeconfig', cp.kubeconfig, '--set', `nats.url=${nats.url}`, '--wait=false'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect({ code: helm.status, stderr: helm.stderr }).toEqual({ code: 0, stderr: '' });
    for (const crd of ['rljobs.rlkube.dev', 'rolloutpools.rlkube.dev', 'learners.rlkube.dev']) {
      await kube(cp, ['wait', '--for=condition=Established', `crd/${crd}`, '--timeout=60s']);
    }
    const deployment = await kubeJson(cp, ['get', 'deployment', 'rlkube-rlkube-operator', '-n', 'rlkube-system']);
    expect(deployment.spec.template.spec.serviceAccountName).toBe('rlkube-rlkube-operator');
    expect(deployment.spec.template.spec.containers[0].securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });

    // a kubeconfig that authenticates as the chart's ServiceAccount
    const token = (await kube(cp, ['create', 'token', 'rlkube-rlkube-operator', '-n', 'rlkube-system', '--duration=1h'])).trim();
    const admin = parse(readFileSync(cp.kubeconfig, 'utf8'));
    writeFileSync(saKubeconfig, stringify({
      apiVersion: 'v1', kind: 'Config', clusters: admin.clusters, 'current-context': 'sa',
      contexts: [{ name: 'sa', context: { cluster: admin.clusters[0].name, user: 'sa' } }],
      users: [{ name: 'sa', user: { token } }],
    }));
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(2, '', 'chart-pv'));
    // the chart's own replicas run in kwok (no process): stop them, so that the lease is ours to take
    await kube(cp, ['scale', 'deployment', 'rlkube-rlkube-operator', '-n', 'rlkube-system', '--replicas=0']);
    operator = await startOperator({ kubeconfig: saKubeconfig, natsUrl: nats.url, identity: 'chart-sa', args: ['--lease-namespace', 'rlkube-system'] });

    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('charted', 1)));
    await pollUntil(async (observe) => {
      const job = await kubeJson(cp, ['get', 'rljob', 'charted']);
      observe(JSON.stringify(job.status ?? {}));
      return job.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    }, { ...WAIT, what: 'job charted to be Ready under the chart ServiceAccount' });
    const lease = await kubeJson(cp, ['get', 'lease', 'rlkube-operator', '-n', 'rlkube-system']);
    expect(lease.spec.holderIdentity).toBe('chart-sa');
    await kube(cp, ['delete', 'rljob', 'charted', '--wait=true', '--timeout=60s']);
    expect(operator.logs()).not.toMatch(/forbidden/i);
  }, 300_000);
});
