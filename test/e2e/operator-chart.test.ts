// The Helm chart against a real control plane: it installs (CRDs from the chart's crds/), prints its NOTES, and
// the RBAC it grants is enough: the operator, run as a local process authenticated with a token of the chart's
// ServiceAccount (so with exactly the chart's RBAC; kwok runs no containers), reconciles a job end to end
// (children, status, events, lease, finalizer, the job's NATS credentials) without one "forbidden". A job's
// NATS credentials (DESIGN.md §7): a Secret the job's pods mount, working at the server while the job lives,
// removed and revoked at the server with the job. Bad values are refused by `helm install` with nothing
// created. In namespaced mode (watchNamespaces), the operator, with only the Roles the chart grants there,
// reconciles a job in a watched namespace and never sends the API server a request outside them (audit log).
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Deployment, V1Lease, V1Pod, V1PodDisruptionBudget, V1Secret } from '@kubernetes/client-node';
import { connect, credsAuthenticator } from '@nats-io/transport-node';
import type { RLJob } from '../../api/index.js';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';
import { jobNames } from '../../bus/index.js';
import { CHART, helm } from '../harness/helm.js';
import { startAuthNats, type AuthNatsServer } from '../harness/nats-auth.js';
import { cpuJob, kube, kubeJson, persistentVolumes, startOperator, writeServiceAccountKubeconfig, type Live, type OperatorProcess } from '../harness/operator-fixtures.js';

const WAIT = { timeoutMs: 90_000, intervalMs: 500 };
const SCOPED_SA = 'system:serviceaccount:rlkube-scoped:scoped-rlkube-operator';
// Every request of the namespaced operator's identity, and nothing else.
const SCOPED_AUDIT = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["${SCOPED_SA}"]
  - level: None
`;
interface AuditEvent { verb: string; requestURI: string; objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string } }

describe('Helm chart rlkube-operator (e2e)', () => {
  let cp: ControlPlane;
  let nats: AuthNatsServer;
  let operator: OperatorProcess | undefined;
  const kubeconfigs: string[] = [];

  beforeAll(async () => {
    [cp, nats] = await Promise.all([startControlPlane({ name: 'operator-chart', cpuNodes: 1, auditPolicy: SCOPED_AUDIT }), startAuthNats({ maxPayload: 9 * 1024 * 1024 })]);
  }, 240_000);
  afterAll(async () => {
    await operator?.stop('SIGTERM');
    for (const k of kubeconfigs) rmSync(k, { force: true });
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 120_000);

  /** A kubeconfig that authenticates with a token of this ServiceAccount: a process using it has the SA's RBAC only. */
  async function serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    const file = join(tmpdir(), `rlkube-chart-${name}-${process.pid}.kubeconfig`);
    kubeconfigs.push(file);
    await writeServiceAccountKubeconfig(cp, namespace, name, file);
    return file;
  }

  test('installs, prints what it installed, and its ServiceAccount may do everything the operator does', async () => {
    const install = helm(['install', 'rlkube', CHART, '--namespace', 'rlkube-system', '--create-namespace',
      '--kubeconfig', cp.kubeconfig, '--set', `nats.url=${nats.url}`,
      '--set', 'nats.credentialsSecret=rlkube-nats', '--set', 'nats.jobCredentials.secret=rlkube-nats-admin', '--wait=false']);
    expect({ code: install.code, stderr: install.stderr }).toEqual({ code: 0, stderr: '' });
    // NOTES.txt
    for (const line of [
      '- Deployment rlkube-rlkube-operator: 2 replica(s) of ghcr.io/rlkube/operator:0.1.0, one leading through the Lease rlkube-system/rlkube-operator',
      '- Watching RLJobs in all namespaces (ClusterRole and ClusterRoleBinding rlkube-rlkube-operator)',
      `- NATS: ${nats.url} with the credentials in Secret rlkube-system/rlkube-nats; per-job credentials issued with Secret rlkube-system/rlkube-nats-admin`,
      '- PodDisruptionBudget rlkube-rlkube-operator: minAvailable 1',
      'kubectl apply -n default -f examples/reverse-cpu.yaml',
    ]) expect(install.stdout).toContain(line);
    for (const crd of ['rljobs.rlkube.dev', 'rolloutpools.rlkube.dev', 'learners.rlkube.dev']) {
      await kube(cp, ['wait', '--for=condition=Established', `crd/${crd}`, '--timeout=60s']);
    }
    const deployment = await kubeJson<Live<V1Deployment>>(cp, ['get', 'deployment', 'rlkube-rlkube-operator', '-n', 'rlkube-system']);
    expect(deployment.spec.template.spec?.serviceAccountName).toBe('rlkube-rlkube-operator');
    expect(deployment.spec.template.spec?.containers[0]?.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    const pdb = await kubeJson<Live<V1PodDisruptionBudget>>(cp, ['get', 'poddisruptionbudget', 'rlkube-rlkube-operator', '-n', 'rlkube-system']);
    expect(pdb.spec).toMatchObject({ minAvailable: 1, selector: deployment.spec.selector });

    const saKubeconfig = await serviceAccountKubeconfig('rlkube-system', 'rlkube-rlkube-operator');
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(2, '', 'chart-pv'));
    // the chart's own replicas run in kwok (no process): stop them, so that the lease is ours to take
    await kube(cp, ['scale', 'deployment', 'rlkube-rlkube-operator', '-n', 'rlkube-system', '--replicas=0']);
    operator = await startOperator({ kubeconfig: saKubeconfig, natsUrl: nats.url, identity: 'chart-sa', args: ['--lease-namespace', 'rlkube-system', ...nats.operatorArgs] });

    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('charted', 1)));
    await pollUntil(async (observe) => {
      const job = await kubeJson<RLJob>(cp, ['get', 'rljob', 'charted']);
      observe(JSON.stringify(job.status ?? {}));
      return job.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    }, { ...WAIT, what: 'job charted to be Ready under the chart ServiceAccount' });
    const lease = await kubeJson<Live<V1Lease>>(cp, ['get', 'lease', 'rlkube-operator', '-n', 'rlkube-system']);
    expect(lease.spec.holderIdentity).toBe('chart-sa');

    // The job's NATS credentials: a Secret owned by the job, mounted by its agents only.
    const job = await kubeJson<RLJob>(cp, ['get', 'rljob', 'charted']);
    const secret = await kubeJson<V1Secret>(cp, ['get', 'secret', 'charted-nats-creds']);
    expect(secret.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'RLJob', name: 'charted', uid: job.metadata.uid, controller: true })]);
    const creds = Buffer.from(secret.data?.creds ?? '', 'base64');
    expect(creds.toString()).toContain('BEGIN NATS USER JWT');
    expect(creds.toString()).not.toContain(readFileSync(nats.operatorCreds, 'utf8').split('\n')[1]!); // not the operator's own
    const pods = (await kubeJson<{ items: Array<Live<V1Pod>> }>(cp, ['get', 'pods', '-l', 'rlkube.dev/job=charted'])).items;
    expect(pods.map((p) => p.metadata.labels?.['rlkube.dev/role']).sort()).toEqual(['learner', 'rollout']);
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

  test('helm install refuses bad values, and a ServiceMonitor on a cluster without its CRD, creating nothing', async () => {
    for (const [args, message] of [
      [['--set', 'replicaCount=two'], "- at '/replicaCount': got string, want integer"],
      [['--set', 'nats.url=http://nats:4222'], "- at '/nats/url': 'http://nats:4222' does not match pattern"],
      [['--set', 'serviceMonitor.enabled=true'], 'serviceMonitor.enabled: this cluster has no monitoring.coreos.com/v1 ServiceMonitor'],
    ] as const) {
      const install = helm(['install', 'refused', CHART, '--namespace', 'rlkube-refused', '--create-namespace', '--kubeconfig', cp.kubeconfig, ...args]);
      expect({ code: install.code, stderr: install.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/^Error: INSTALLATION FAILED: /) });
      expect(install.stderr).toContain(message);
    }
    expect(helm(['list', '--all-namespaces', '--all', '--short', '--kubeconfig', cp.kubeconfig]).stdout.split('\n')).not.toContain('refused');
    expect(await kube(cp, ['get', 'deployments,serviceaccounts,roles', '-n', 'rlkube-refused', '-l', 'app.kubernetes.io/instance=refused', '-o', 'name'])).toBe('');
  });

  test('namespaced mode: with only its Roles, the operator reconciles a job in a watched namespace and never looks outside', async () => {
    await operator?.stop('SIGTERM'); // the cluster-wide operator of the first test would take every job
    operator = undefined;
    await kube(cp, ['create', 'namespace', 'team-a']);
    await kube(cp, ['create', 'namespace', 'team-b']);
    const install = helm(['install', 'scoped', CHART, '--namespace', 'rlkube-scoped', '--create-namespace', '--kubeconfig', cp.kubeconfig,
      '--set', `nats.url=${nats.url}`, '--set', 'watchNamespaces={team-a},replicaCount=1',
      '--set', 'nats.credentialsSecret=rlkube-nats', '--set', 'nats.jobCredentials.secret=rlkube-nats-admin', '--wait=false']);
    expect({ code: install.code, stderr: install.stderr }).toEqual({ code: 0, stderr: '' });
    expect(install.stdout).toContain('- Watching RLJobs only in: team-a (a Role and RoleBinding scoped-rlkube-operator in each; nothing cluster-wide)');
    expect(install.stdout).toContain('- No PodDisruptionBudget: one replica');
    expect(await kube(cp, ['get', 'clusterroles,clusterrolebindings', '-l', 'app.kubernetes.io/instance=scoped', '-o', 'name'])).toBe('');
    const may = async (args: string[]) => (await cp.kubectl(['auth', 'can-i', ...args, '--as', SCOPED_SA])).stdout.trim();
    expect(await Promise.all([may(['create', 'learners', '-n', 'team-a']), may(['list', 'rljobs', '-n', 'team-b']), may(['list', 'rljobs', '--all-namespaces'])]))
      .toEqual(['yes', 'no', 'no']);

    // The operator as the chart runs it: its ServiceAccount, and the Deployment's RLKUBE_WATCH_NAMESPACES.
    const deployment = await kubeJson<Live<V1Deployment>>(cp, ['get', 'deployment', 'scoped-rlkube-operator', '-n', 'rlkube-scoped']);
    const watched = deployment.spec.template.spec?.containers[0]?.env?.find((e) => e.name === 'RLKUBE_WATCH_NAMESPACES')?.value;
    if (watched === undefined) throw new Error('the chart\'s Deployment sets no RLKUBE_WATCH_NAMESPACES');
    expect(watched).toBe('team-a');
    await kube(cp, ['scale', 'deployment', 'scoped-rlkube-operator', '-n', 'rlkube-scoped', '--replicas=0']);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(1, '', 'scoped-pv'));
    await kube(cp, ['apply', '-n', 'team-b', '-f', '-'], JSON.stringify(cpuJob('outside', 1)));
    await kube(cp, ['apply', '-n', 'team-a', '-f', '-'], JSON.stringify(cpuJob('inside', 1)));
    const kubeconfig = await serviceAccountKubeconfig('rlkube-scoped', 'scoped-rlkube-operator');
    operator = await startOperator({ kubeconfig, natsUrl: nats.url, identity: 'scoped-sa', env: { RLKUBE_WATCH_NAMESPACES: watched }, args: ['--lease-namespace', 'rlkube-scoped', ...nats.operatorArgs] });

    await pollUntil(async (observe) => {
      const job = await kubeJson<RLJob>(cp, ['get', 'rljob', 'inside', '-n', 'team-a']);
      observe(JSON.stringify(job.status ?? {}));
      return job.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    }, { ...WAIT, what: 'job team-a/inside to be Ready under the namespaced chart\'s ServiceAccount' });
    // The job in team-b, there before the operator started, was never touched.
    const outside = await kubeJson<RLJob>(cp, ['get', 'rljob', 'outside', '-n', 'team-b']);
    expect({ status: outside.status, finalizers: outside.metadata.finalizers }).toEqual({ status: undefined, finalizers: undefined });
    expect(await kube(cp, ['get', 'rolloutpools,learners,deployments,statefulsets,services,secrets', '-n', 'team-b', '-o', 'name'])).toBe('');
    // Deleting the watched job runs its finalizer (NATS state, credentials) with the same Roles.
    await kube(cp, ['delete', 'rljob', 'inside', '-n', 'team-a', '--wait=true', '--timeout=60s']);
    expect(operator.logs()).not.toMatch(/forbidden/i);

    // Every request the operator's identity made was in team-a or, for its Lease, in the release namespace.
    const requests = readFileSync(cp.auditLog!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    const where = new Set(requests.map((r) => r.objectRef?.namespace ?? `(no namespace) ${r.verb} ${r.requestURI}`));
    expect([...where].sort()).toEqual(['rlkube-scoped', 'team-a']);
    // (and the log holds the reconcile's requests: it is the operator's whole traffic, not a part)
    const inTeamA = requests.filter((r) => r.objectRef?.namespace === 'team-a').map((r) => `${r.verb} ${r.objectRef!.resource}${r.objectRef!.subresource ? `/${r.objectRef!.subresource}` : ''}`);
    expect(inTeamA).toEqual(expect.arrayContaining(['list rljobs', 'watch rljobs', 'patch rolloutpools', 'patch learners', 'patch rljobs/status', 'create events', 'delete secrets']));
  }, 300_000);
});
