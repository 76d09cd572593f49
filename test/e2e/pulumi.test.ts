// `pulumi up` of infra/ for real: the pinned Pulumi CLI, its Node.js language host and the Kubernetes provider
// (toolchain/pulumi), a local file backend, against the test control plane, the stack's settings given through
// `pulumi config set`. The invariants: a bad setting is refused before anything is created, with the setting
// named; what `pulumi up` installs runs jobs (an RLJob applied in a job namespace is reconciled by the operator it
// installed, with the images and NATS credentials the settings name); `pulumi destroy` leaves nothing of ours
// but the CRDs, which are kept by design (README: Helm never deletes a chart's CRDs, nor the jobs elsewhere).
//
// The cluster's nodes are kwok's: no container runs. NATS is therefore an existing one (the settings'
// rlkube:nats.url, a real nats-server in decentralized-auth mode on this machine), and the operator's Deployment,
// which pulumi creates, is run the way its pod would run it: a local process with that Deployment's container
// environment, the Secrets it mounts as files, and the token of its ServiceAccount (so the RBAC pulumi installed
// is what it works with). Real pods from the chart are covered by test/e2e/realnode.test.ts.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Deployment, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { RLJob } from '../../api/index.js';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';
import { startAuthNats, type AuthNatsServer } from '../harness/nats-auth.js';
import { createPulumiStack, type PulumiStack } from '../harness/pulumi.js';
import { cpuJob, kube, kubeJson, persistentVolumes, writeServiceAccountKubeconfig, startOperator, type Live, type OperatorProcess } from '../harness/operator-fixtures.js';

const WAIT = { timeoutMs: 120_000, intervalMs: 500 };
const SYSTEM = 'rlkube-system';
const JOBS = 'team-a';
const IMAGES = {
  operator: 'registry.e2e.example:5000/rlkube/operator:e2e',
  agent: 'registry.e2e.example:5000/rlkube/agent:e2e',
  trainer: 'registry.e2e.example:5000/rlkube/trainer:e2e',
  vllm: 'registry.e2e.example:5000/rlkube/vllm:e2e',
};
const CRDS = ['learners.rlkube.dev', 'rljobs.rlkube.dev', 'rolloutpools.rlkube.dev'];
/** What of ours can exist outside a namespace the platform owns. */
const CLUSTER_KINDS = 'clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations';

describe('pulumi up of infra/ (e2e)', () => {
  let cp: ControlPlane;
  let nats: AuthNatsServer;
  const stacks: PulumiStack[] = [];
  const newStack = async (name: string) => {
    const stack = await createPulumiStack({ name: `${name}-${process.pid}`, kubeconfig: cp.kubeconfig });
    stacks.push(stack);
    return stack;
  };
  let operator: OperatorProcess | undefined;
  const files = mkdtempSync(join(tmpdir(), 'rlkube-pulumi-e2e-'));

  beforeAll(async () => {
    [cp, nats] = await Promise.all([
      startControlPlane({ name: 'pulumi', gpuNodes: [{ name: 'gpu-0', gpus: 8 }], cpuNodes: 1 }),
      startAuthNats({ maxPayload: 9 * 1024 * 1024 }),
    ]);
  }, 240_000);
  afterAll(async () => {
    await operator?.stop('SIGTERM');
    for (const stack of stacks) {
      await stack.run(['destroy', '--yes']).catch(() => undefined); // a failed test may have left resources
      await stack.remove();
    }
    rmSync(files, { recursive: true, force: true });
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 300_000);

  /** Objects labelled as ours, anywhere; and namespaces other than Kubernetes' own. */
  async function oursInCluster(): Promise<string[]> {
    const labelled = await kube(cp, ['get', `namespaces,${CLUSTER_KINDS}`, '-A', '-l', 'app.kubernetes.io/part-of=rlkube', '-o', 'name']);
    const released = await kube(cp, ['get', `${CLUSTER_KINDS},secrets,deployments`, '-A', '-l', 'app.kubernetes.io/instance=rlkube-operator', '-o', 'name']);
    const helmReleases = await kube(cp, ['get', 'secrets', '-A', '-l', 'owner=helm', '-o', 'name']);
    const namespaces = (await kube(cp, ['get', 'namespaces', '-o', 'name'])).split('\n')
      .filter((n) => n && !['namespace/default', 'namespace/kube-system', 'namespace/kube-public', 'namespace/kube-node-lease'].includes(n));
    return [...new Set([labelled, released, helmReleases].join('\n').split('\n').concat(namespaces).filter(Boolean))].sort();
  }

  test('a bad setting is refused before anything is created, the setting named', async () => {
    const stack = await newStack('refused');
    const before = [...await oursInCluster(), await kube(cp, ['get', 'crds', '-o', 'name'])];
    await stack.setConfig('nats.replicas', '2');
    const up = await stack.run(['up', '--yes']);
    expect(up.code).not.toBe(0);
    expect(up.output).toContain('rlkube:nats.replicas: must be one of: 1, 3, 5 (got 2)');
    expect(up.output).not.toMatch(/at .*\.ts:\d+/); // the message alone, no stack trace
    expect((await stack.resources()).filter((r) => r.type !== 'pulumi:pulumi:Stack')).toEqual([]);
    expect([...await oursInCluster(), await kube(cp, ['get', 'crds', '-o', 'name'])]).toEqual(before);

    // a key that is not a setting is refused too (here the usual slip: a nested setting set without --path)
    expect((await stack.run(['config', 'rm', '--path', 'rlkube:nats.replicas'])).code).toBe(0);
    expect((await stack.run(['config', 'set', 'rlkube:operator.replicas', '1'])).code).toBe(0);
    const flat = await stack.run(['up', '--yes']);
    expect(flat.code).not.toBe(0);
    expect(flat.output).toContain('rlkube:operator.replicas: not a setting; a nested setting is set with --path');
    expect([...await oursInCluster(), await kube(cp, ['get', 'crds', '-o', 'name'])]).toEqual(before);
  }, 300_000);

  test('pulumi up installs the platform, the operator it installed reconciles an RLJob with the images and NATS credentials set, pulumi destroy removes it all but the CRDs', async () => {
    const stack = await newStack('lifecycle');
    await stack.setConfig('jobNamespaces[0]', JOBS);
    await stack.setConfig('operator.replicas', '1');
    await stack.setConfig('gpu.devicePlugin', 'false');
    await stack.setConfig('nats.url', nats.url);
    await stack.setConfig('nats.credentials', readFileSync(nats.operatorCreds, 'utf8'), { secret: true });
    await stack.setConfig('nats.jobCredentials.systemCreds', readFileSync(nats.systemCreds, 'utf8'), { secret: true });
    await stack.setConfig('nats.jobCredentials.operatorSigningKey', readFileSync(nats.operatorSigningKey, 'utf8'), { secret: true });
    for (const [component, image] of Object.entries(IMAGES)) await stack.setConfig(`images.${component}`, image);

    const up = await stack.run(['up', '--yes']);
    expect({ code: up.code, output: up.code === 0 ? '' : up.output }).toEqual({ code: 0, output: '' });
    const outputs = JSON.parse((await stack.run(['stack', 'output', '--json'], { configFile: false })).output);
    expect(outputs).toEqual({ natsUrl: nats.url, systemNamespace: SYSTEM, jobNamespaces: [JOBS] });
    // the credentials are Pulumi secrets: the stack's state holds them encrypted, not in the clear
    expect((await stack.run(['stack', 'export'], { configFile: false })).output).not.toContain(readFileSync(nats.operatorSigningKey, 'utf8').trim());

    for (const crd of CRDS) await kube(cp, ['wait', '--for=condition=Established', `crd/${crd}`, '--timeout=60s']);
    const deployment = await kubeJson<Live<V1Deployment>>(cp, ['get', 'deployment', 'rlkube-operator', '-n', SYSTEM]);
    const container = deployment.spec.template.spec?.containers[0];
    expect(container?.image).toBe(IMAGES.operator);
    const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      RLKUBE_NATS_URL: nats.url, RLKUBE_WATCH_NAMESPACES: JOBS,
      RLKUBE_AGENT_IMAGE: IMAGES.agent, RLKUBE_TRAINER_IMAGE: IMAGES.trainer, RLKUBE_VLLM_IMAGE: IMAGES.vllm,
    });

    operator = await runDeploymentLocally(deployment);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(1, '', 'pulumi-pv'));
    const job = { ...cpuJob('via-pulumi', 1), metadata: { name: 'via-pulumi', namespace: JOBS } };
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(job));
    await pollUntil(async (observe) => {
      const status = (await kubeJson<RLJob>(cp, ['get', 'rljob', 'via-pulumi', '-n', JOBS])).status ?? {};
      observe(JSON.stringify(status));
      return status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    }, { ...WAIT, what: 'the RLJob via-pulumi to be Ready under the operator pulumi installed' });

    // Its children run the images the settings named, with the job's own NATS identity (issued through the
    // credentials pulumi put into the operator's Secrets).
    const pods = (await kubeJson<{ items: Array<Live<V1Pod>> }>(cp, ['get', 'pods', '-n', JOBS, '-l', 'rlkube.dev/job=via-pulumi'])).items;
    expect(pods.map((p) => p.metadata.labels?.['rlkube.dev/role']).sort()).toEqual(['learner', 'rollout']);
    for (const pod of pods) {
      const agent = pod.spec.containers.find((c) => c.name === 'agent');
      expect({ pod: pod.metadata.name, image: agent?.image }).toEqual({ pod: pod.metadata.name, image: IMAGES.agent });
      // the engine (the tiny policy server) and the trainer both run the trainer image
      const others = pod.spec.containers.filter((c) => c.name !== 'agent').map((c) => c.image);
      expect(others.length).toBeGreaterThan(0);
      expect(others).toEqual(others.map(() => IMAGES.trainer));
    }
    const creds = await kubeJson<V1Secret>(cp, ['get', 'secret', 'via-pulumi-nats-creds', '-n', JOBS]);
    expect(Buffer.from(creds.data?.creds ?? '', 'base64').toString()).toContain('BEGIN NATS USER JWT');

    // A job's finalizer needs the operator: delete jobs before `pulumi destroy` (README).
    await kube(cp, ['delete', 'rljob', 'via-pulumi', '-n', JOBS, '--wait=true', '--timeout=90s']);
    expect(operator.logs()).not.toMatch(/forbidden/i);
    await operator.stop('SIGTERM');
    operator = undefined;

    // pulumi destroy leaves nothing of ours in the cluster; the CRDs stay, as documented
    const destroy = await stack.run(['destroy', '--yes']);
    expect({ code: destroy.code, output: destroy.code === 0 ? '' : destroy.output }).toEqual({ code: 0, output: '' });
    expect((await stack.resources()).filter((r) => r.type !== 'pulumi:pulumi:Stack')).toEqual([]);
    expect(await oursInCluster()).toEqual([]);
    const crds = (await kube(cp, ['get', 'crds', '-o', 'name'])).split('\n').filter((n) => n.includes('rlkube.dev'));
    expect(crds.sort()).toEqual(CRDS.map((c) => `customresourcedefinition.apiextensions.k8s.io/${c}`));
  }, 900_000);

  /**
   * The operator Deployment's container as a local process: its environment (the downward-API fields filled in
   * as the kubelet would), the Secrets it mounts written to files at the paths its env names are rewritten to,
   * and its ServiceAccount's token.
   */
  async function runDeploymentLocally(deployment: Live<V1Deployment>): Promise<OperatorProcess> {
    const pod = deployment.spec.template.spec;
    const container = pod?.containers[0];
    const namespace = deployment.metadata.namespace;
    if (!pod || !container || !namespace) throw new Error(`Deployment ${deployment.metadata.name}: no pod template, container or namespace`);
    const identity = `${deployment.metadata.name}-local`;
    const mounted = new Map<string, string>(); // path in the pod → file here
    for (const mount of container.volumeMounts ?? []) {
      const source = pod.volumes?.find((v) => v.name === mount.name)?.secret;
      if (!source?.secretName) throw new Error(`volume ${mount.name} of the operator's pod is not a Secret`);
      const secret = await kubeJson<V1Secret>(cp, ['get', 'secret', source.secretName, '-n', namespace]);
      for (const item of source.items ?? []) {
        const file = join(files, `${mount.name}-${item.path}`);
        const data = secret.data?.[item.key];
        if (data === undefined) throw new Error(`Secret ${source.secretName} has no key ${item.key}`);
        writeFileSync(file, Buffer.from(data, 'base64'), { mode: 0o600 });
        mounted.set(`${mount.mountPath}/${item.path}`, file);
      }
    }
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) {
      const field = e.valueFrom?.fieldRef?.fieldPath;
      const value = field === 'metadata.name' ? identity : field === 'metadata.namespace' ? namespace : e.value ?? '';
      env[e.name] = mounted.get(value) ?? value;
    }
    const kubeconfig = join(files, 'operator-sa.kubeconfig');
    await writeServiceAccountKubeconfig(cp, namespace, pod.serviceAccountName ?? 'default', kubeconfig);
    return startOperator({ kubeconfig, natsUrl: env.RLKUBE_NATS_URL!, identity, env, args: ['--lease-namespace', namespace] });
  }
});
