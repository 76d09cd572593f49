// The Helm chart against a real control plane: it installs (CRDs from the chart's crds/), and the RBAC it
// grants is enough: the operator, run with the chart's ServiceAccount token, reconciles a job end to end
// (children, status, events, lease, finalizer, the job's NATS credentials) without one "forbidden". And a
// job's NATS credentials (DESIGN.md §7): a Secret the job's pods mount, working at the server while the job
// lives, removed and revoked at the server with the job.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { pollUntil, startControlPlane, toolchainBinDir, type ControlPlane } from '../harness/kube.js';
import { connect, credsAuthenticator } from '@nats-io/transport-node';
import { jobNames } from '../../bus/index.js';
import { startAuthNats, type AuthNatsServer } from '../harness/nats-auth.js';
import { REPO_ROOT, cpuJob, kube, kubeJson, persistentVolumes, startOperator, type OperatorProcess } from './operator-fixtures.js';

const WAIT = { timeoutMs: 90_000, intervalMs: 500 };

describe('Helm chart rlkube-operator (e2e)', () => {
  let cp: ControlPlane;
  let nats: AuthNatsServer;
  let operator: OperatorProcess | undefined;
  const saKubeconfig = join(tmpdir(), `rlkube-chart-sa-${process.pid}.kubeconfig`);

  beforeAll(async () => {
    [cp, nats] = await Promise.all([startControlPlane({ name: 'operator-chart', cpuNodes: 1 }), startAuthNats({ maxPayload: 9 * 1024 * 1024 })]);
  }, 240_000);
  afterAll(async () => {
    await operator?.stop('SIGTERM');
    rmSync(saKubeconfig, { force: true });
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 120_000);

  test('installs, and its ServiceAccount may do everything the operator does', async () => {
    const helm = spawnSync(join(toolchainBinDir(), 'helm'), ['install', 'rlkube', 'charts/rlkube-operator', '--namespace', 'rlkube-system', '--create-namespace',
      '--kubeconfig', cp.kubeconfig, '--set', `nats.url=${nats.url}`,
      '--set', 'nats.credentialsSecret=rlkube-nats', '--set', 'nats.jobCredentials.secret=rlkube-nats-admin', '--wait=false'], { cwd: REPO_ROOT, encoding: 'utf8' });
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
    operator = await startOperator({ kubeconfig: saKubeconfig, natsUrl: nats.url, identity: 'chart-sa', args: ['--lease-namespace', 'rlkube-system', ...nats.operatorArgs] });

    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('charted', 1)));
    await pollUntil(async (observe) => {
      const job = await kubeJson(cp, ['get', 'rljob', 'charted']);
      observe(JSON.stringify(job.status ?? {}));
      return job.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    }, { ...WAIT, what: 'job charted to be Ready under the chart ServiceAccount' });
    const lease = await kubeJson(cp, ['get', 'lease', 'rlkube-operator', '-n', 'rlkube-system']);
    expect(lease.spec.holderIdentity).toBe('chart-sa');

    // The job's NATS credentials: a Secret owned by the job, mounted by its agents only.
    const job = await kubeJson(cp, ['get', 'rljob', 'charted']);
    const secret = await kubeJson(cp, ['get', 'secret', 'charted-nats-creds']);
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'RLJob', name: 'charted', uid: job.metadata.uid, controller: true })]);
    const creds = Buffer.from(secret.data.creds, 'base64');
    expect(creds.toString()).toContain('BEGIN NATS USER JWT');
    expect(creds.toString()).not.toContain(readFileSync(nats.operatorCreds, 'utf8').split('\n')[1]!); // not the operator's own
    const pods = (await kubeJson<{ items: any[] }>(cp, ['get', 'pods', '-l', 'rlkube.dev/job=charted'])).items;
    expect(pods.map((p) => p.metadata.labels['rlkube.dev/role']).sort()).toEqual(['learner', 'rollout']);
    for (const pod of pods) {
      expect(pod.spec.volumes).toContainEqual({ name: 'nats-creds', secret: expect.objectContaining({ secretName: 'charted-nats-creds' }) });
      for (const c of pod.spec.containers) {
        const mounted = (c.volumeMounts ?? []).some((m: { name: string }) => m.name === 'nats-creds');
        expect({ pod: pod.metadata.name, container: c.name, mounted }).toEqual({ pod: pod.metadata.name, container: c.name, mounted: c.name === 'agent' });
        if (c.name === 'agent') expect(c.env).toContainEqual({ name: 'RLKUBE_NATS_CREDS', value: '/etc/rlkube/nats/creds' });
      }
    }
    // They work at the server while the job lives...
    const asJob = () => connect({ servers: nats.url, authenticator: credsAuthenticator(creds), inboxPrefix: jobNames({ namespace: 'default', name: 'charted' }).inboxPrefix, timeout: 5000, maxReconnectAttempts: 0 });
    const nc = await asJob();
    const disconnected = nc.closed();

    await kube(cp, ['delete', 'rljob', 'charted', '--wait=true', '--timeout=60s']);
    // ...and are removed and revoked with it: the server closes the job's connection and refuses new ones.
    await pollUntil(async (observe) => {
      const r = await cp.kubectl(['get', 'secret', 'charted-nats-creds']);
      observe(r.stdout + r.stderr);
      return r.code !== 0 && r.stderr.includes('NotFound');
    }, { ...WAIT, what: 'the credentials Secret to be removed with the job' });
    await disconnected;
    expect(nc.isClosed()).toBe(true);
    await expect(asJob()).rejects.toThrow('Authorization Violation');
    expect(operator.logs()).not.toMatch(/forbidden/i);
  }, 300_000);
});
