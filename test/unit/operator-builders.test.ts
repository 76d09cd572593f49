// Builders are pure: spec in, child objects out. Table-driven checks of what each piece must hold.
import { AGENT_ENV, parseAgentEnv, parseRLJobManifest, type Learner, type RLJob, type RolloutPool } from '../../api/index.js';
import { ENVIRONMENT_PORT, agentEnv, engineContainer, gpuResources, podTolerations, trainerContainer, type BuildConfig } from '../../operator/controllers/builders.js';
import { contains } from '../../operator/controllers/json.js';
import { buildLearnerService, buildStatefulSet } from '../../operator/controllers/learner.js';
import { FINALIZER, LABELS } from '../../operator/controllers/meta.js';
import { buildLearner, buildPools } from '../../operator/controllers/rljob.js';
import { buildDeployment } from '../../operator/controllers/rolloutpool.js';
import { readExample } from '../harness/examples.js';

const config: BuildConfig = { images: { agent: 'agent:1', trainer: 'trainer:1', vllm: 'vllm:1' }, natsUrl: 'nats://nats:4222' };
const withMeta = (job: RLJob): RLJob => ({ ...job, metadata: { ...job.metadata, namespace: 'team', uid: 'job-uid', generation: 1 } });
const cpuJob = withMeta(parseRLJobManifest(readExample('reverse-cpu.yaml')));
const gpuJob = withMeta(parseRLJobManifest(readExample('gsm8k-gpu.yaml')));
const asServed = <T extends { metadata: object }>(obj: T): T => ({ ...obj, metadata: { ...obj.metadata, uid: 'child-uid', generation: 1 } });

describe('gpuResources', () => {
  test.each([
    ['no GPUs, no resources', undefined, 0, {}],
    ['CPU only', { requests: { cpu: '500m', memory: 256 } }, 0, { requests: { cpu: '500m', memory: '256' } }],
    ['GPUs as request = limit', { requests: { cpu: '4' } }, 2, { requests: { cpu: '4', 'nvidia.com/gpu': '2' }, limits: { 'nvidia.com/gpu': '2' } }],
    ['GPUs next to a memory limit', { limits: { memory: '8Gi' } }, 1, { requests: { 'nvidia.com/gpu': '1' }, limits: { memory: '8Gi', 'nvidia.com/gpu': '1' } }],
  ])('%s', (_name, resources, gpus, expected) => {
    expect(gpuResources(resources, gpus)).toEqual(expected);
  });
});

describe('podTolerations', () => {
  test.each([
    ['CPU pod: as given', [], 0, []],
    ['GPU pod tolerates the GPU taint', [], 1, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]],
    ['GPU pod with its own GPU toleration: unchanged', [{ key: 'nvidia.com/gpu', operator: 'Equal' as const, value: 'a100' }], 1, [{ key: 'nvidia.com/gpu', operator: 'Equal', value: 'a100' }]],
  ])('%s', (_name, given, gpus, expected) => {
    expect(podTolerations(given, gpus)).toEqual(expected);
  });
});

describe('agentEnv', () => {
  const resolve = (env: ReturnType<typeof agentEnv>) =>
    Object.fromEntries(env.map((e) => [e.name, e.value ?? (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name' ? 'pod-0' : '')]));

  test.each([
    ['rollout', 'reverse-cpu-cpu'],
    ['learner', undefined],
  ] as const)('a %s agent gets an environment that parseAgentEnv accepts', (role, pool) => {
    const config2 = parseAgentEnv(resolve(agentEnv({ job: cpuJob, role, ...(pool ? { pool } : {}), config })));
    expect(config2).toMatchObject({ role, namespace: 'team', job: 'reverse-cpu', workerId: 'pod-0', natsServers: ['nats://nats:4222'] });
    expect(config2.jobSpec.algorithm.groupSize).toBe(8);
  });

  test('the job NATS URL and credentials Secret win over the operator default', () => {
    const job = { ...cpuJob, spec: { ...cpuJob.spec, nats: { url: 'nats://other:4222', credentialsSecret: 'creds' } } };
    const env = resolve(agentEnv({ job, role: 'rollout', pool: 'p', config }));
    expect(env).toMatchObject({ RLKUBE_NATS_URL: 'nats://other:4222', RLKUBE_NATS_CREDS: '/etc/rlkube/nats/creds' });
  });

  test.each([
    ['an open server: no credentials', {}, false, undefined],
    ['issued by the operator: the job\'s own Secret', {}, true, 'reverse-cpu-nats-creds'],
    ['the job brings its own Secret: that one', { credentialsSecret: 'mine' }, true, 'mine'],
    ['the job uses another server: none issued there', { url: 'nats://other:4222' }, true, undefined],
  ])('NATS credentials: %s', (_name, nats, jobCredentials, secret) => {
    const job = { ...cpuJob, spec: { ...cpuJob.spec, nats } };
    const cfg = { ...config, jobCredentials };
    const pod = buildDeployment(asServed(buildPools(job)[0]!), job, cfg).spec!.template.spec!;
    const agent = pod.containers.find((c) => c.name === 'agent')!;
    expect(resolve(agentEnv({ job, role: 'rollout', pool: 'p', config: cfg })).RLKUBE_NATS_CREDS).toBe(secret ? '/etc/rlkube/nats/creds' : undefined);
    expect(pod.volumes?.find((v) => v.name === 'nats-creds')?.secret?.secretName).toBe(secret);
    expect(agent.volumeMounts?.find((m) => m.name === 'nats-creds')?.mountPath).toBe(secret ? '/etc/rlkube/nats' : undefined);
    // Only the agent holds the credentials: the engine never sees them.
    expect(pod.containers.find((c) => c.name === 'engine')!.volumeMounts?.some((m) => m.name === 'nats-creds')).toBe(false);
  });

  test('suspending or resizing does not change the agents environment (no restart of every agent)', () => {
    const before = agentEnv({ job: cpuJob, role: 'rollout', pool: 'p', config });
    const changed = { ...cpuJob, spec: { ...cpuJob.spec, suspend: true, rollout: { pools: [{ ...cpuJob.spec.rollout.pools[0]!, replicas: 9 }] } } };
    expect(agentEnv({ job: changed, role: 'rollout', pool: 'p', config })).toEqual(before);
  });
});

describe('engine and trainer containers', () => {
  test.each([
    ['tiny on CPU', cpuJob, { image: 'trainer:1', gpus: undefined, readOnly: true, arg: 'tiny' }],
    ['vLLM on GPUs with LoRA', gpuJob, { image: 'vllm:1', gpus: '1', readOnly: false, arg: '--enable-lora' }],
  ])('%s', (_name, job, expected) => {
    const c = engineContainer(job.spec.rollout.pools[0]!.engine, job, config);
    expect(c.name).toBe('engine');
    expect(c.image).toBe(expected.image);
    expect(c.resources?.limits?.['nvidia.com/gpu']).toBe(expected.gpus);
    expect(c.securityContext?.readOnlyRootFilesystem).toBe(expected.readOnly);
    expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
    expect(c.args).toContain(expected.arg);
    expect(c.readinessProbe?.httpGet?.path).toBe('/health');
  });

  test('vLLM gets the worker extension and the route of images/vllm; its agent knows the engine is vllm', () => {
    const pool = buildPools(gpuJob)[0]!;
    const c = engineContainer(pool.spec.engine, gpuJob, config);
    const flag = (name: string) => c.args?.[c.args.indexOf(name) + 1];
    expect(flag('--worker-extension-cls')).toBe('rlkube_vllm.worker.RlkubeWorkerExtension');
    expect(flag('--middleware')).toBe('rlkube_vllm.routes.rlkube_routes');
    const agent = buildDeployment(asServed(pool), gpuJob, config).spec!.template.spec!.containers.find((k) => k.name === 'agent')!;
    expect(agent.env?.find((e) => e.name === 'RLKUBE_ENGINE_KIND')?.value).toBe('vllm');
  });

  test('the trainer gets the algorithm, its GPUs and the checkpoint volume', () => {
    const c = trainerContainer(gpuJob.spec.learner, gpuJob, 'gsm8k-gpu-learner', config);
    expect(c.args).toEqual(expect.arrayContaining(['--model', 'hf:Qwen/Qwen2.5-0.5B-Instruct', '--lr', '0.000005', '--lora-rank', '16']));
    expect(c.resources?.limits?.['nvidia.com/gpu']).toBe('2');
    expect(c.volumeMounts?.map((m) => m.mountPath)).toContain('/checkpoints');
    expect(c.env).toContainEqual({ name: 'MASTER_ADDR', value: 'gsm8k-gpu-learner-0.gsm8k-gpu-learner' });
  });

  test('engines and the trainer listen on the pod IP, where kubelet sends their readiness probes', () => {
    const containers = [
      engineContainer(cpuJob.spec.rollout.pools[0]!.engine, cpuJob, config),
      engineContainer(gpuJob.spec.rollout.pools[0]!.engine, gpuJob, config),
      trainerContainer(cpuJob.spec.learner, cpuJob, 'reverse-cpu-learner', config),
    ];
    for (const c of containers) {
      const port = c.args?.[c.args.indexOf('--port') + 1];
      expect({ name: c.name, host: c.args?.[c.args.indexOf('--host') + 1], probePort: String(c.readinessProbe?.httpGet?.port) })
        .toEqual({ name: c.name, host: '0.0.0.0', probePort: port });
    }
  });
});

describe('RLJob children', () => {
  test('one Learner and one RolloutPool per pool entry, deterministic names, owned by the job', () => {
    const learner = buildLearner(gpuJob);
    const pools = buildPools(gpuJob);
    expect(learner.metadata.name).toBe('gsm8k-gpu-learner');
    expect(pools.map((p) => p.metadata.name)).toEqual(['gsm8k-gpu-a100']);
    for (const child of [learner, ...pools]) {
      expect(child.metadata.ownerReferences).toEqual([{ apiVersion: 'rlkube.dev/v1alpha1', kind: 'RLJob', name: 'gsm8k-gpu', uid: 'job-uid', controller: true, blockOwnerDeletion: true }]);
      expect(child.spec.jobRef).toEqual({ name: 'gsm8k-gpu' });
      expect(child.metadata.labels?.[LABELS.job]).toBe('gsm8k-gpu');
    }
    expect(pools[0]!.spec).toMatchObject({ replicas: 2, engine: { kind: 'vllm', gpus: 1 }, nodeSelector: { 'rlkube.dev/gpu': 'a100' } });
    expect(learner.spec).toMatchObject({ nodes: 1, gpusPerNode: 2 });
    expect(FINALIZER).toBe('rlkube.dev/nats');
  });
});

describe('Deployment of a pool', () => {
  const pool = asServed(buildPools(gpuJob)[0]!) as RolloutPool;
  test.each([
    ['running job', gpuJob, {}, 2],
    ['suspended job', { ...gpuJob, spec: { ...gpuJob.spec, suspend: true } }, {}, 0],
    ['suspended pool', gpuJob, { suspend: true }, 0],
    ['finished job', { ...gpuJob, status: { conditions: [{ type: 'Succeeded', status: 'True' as const, reason: 'MaxStepsReached', lastTransitionTime: '2025-01-01T00:00:00Z' }] } }, {}, 0],
  ])('%s → replicas', (_name, job, poolSpec, replicas) => {
    const d = buildDeployment({ ...pool, spec: { ...pool.spec, suspend: false, ...poolSpec } }, job, config);
    expect(d.spec?.replicas).toBe(replicas);
  });

  test('the environment server beside the agent: built-in from the trainer image, or the job\'s own image, with the hub token', () => {
    const d = buildDeployment({ ...pool, spec: { ...pool.spec, suspend: false } }, gpuJob, config);
    const [, environment, agent] = d.spec!.template.spec!.containers;
    expect(environment).toMatchObject({ image: config.images.trainer, command: ['python3'], ports: [{ containerPort: ENVIRONMENT_PORT }] });
    expect(environment!.args!.slice(0, 2)).toEqual(['-m', 'rlkube_env.server']);
    expect(JSON.parse(environment!.args![environment!.args!.indexOf('--spec') + 1]!)).toEqual({ name: 'gsm8k', dataset: gpuJob.spec.environment.dataset });
    expect(environment!.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(agent!.env).toContainEqual({ name: AGENT_ENV.environmentUrl, value: `http://127.0.0.1:${ENVIRONMENT_PORT}` });
    const custom = { ...gpuJob, spec: { ...gpuJob.spec, environment: { name: 'chess', image: 'me/chess:1', tokenSecret: { name: 'hub', key: 'token' } } } };
    const [, own] = buildDeployment({ ...pool, spec: { ...pool.spec, suspend: false } }, custom, config).spec!.template.spec!.containers;
    expect(own).toMatchObject({ image: 'me/chess:1' });
    expect(own!.command).toBeUndefined();
    expect(own!.args!.slice(0, 4)).toEqual(['--host', '0.0.0.0', '--port', String(ENVIRONMENT_PORT)]);
    expect(own!.env).toContainEqual({ name: AGENT_ENV.hfToken, valueFrom: { secretKeyRef: { name: 'hub', key: 'token' } } });
  });

  test('engine + agent, GPU request, placement, non-root, owned by the pool', () => {
    const d = buildDeployment({ ...pool, spec: { ...pool.spec, suspend: false } }, gpuJob, config);
    const pod = d.spec!.template.spec!;
    expect(pod.containers.map((c) => c.name)).toEqual(['engine', 'environment', 'agent']);
    expect(pod.containers[0]!.resources?.requests?.['nvidia.com/gpu']).toBe('1');
    expect(pod.nodeSelector).toEqual({ 'rlkube.dev/gpu': 'a100' });
    expect(pod.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(pod.containers[1]!.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(d.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'RolloutPool', name: 'gsm8k-gpu-a100', controller: true });
    expect(d.spec?.selector.matchLabels).toEqual({ [LABELS.pool]: 'gsm8k-gpu-a100' });
    expect(d.spec?.template.metadata?.labels).toMatchObject({ [LABELS.pool]: 'gsm8k-gpu-a100', [LABELS.job]: 'gsm8k-gpu', [LABELS.role]: 'rollout' });
  });
});

describe('StatefulSet and Service of a learner', () => {
  const learner = asServed(buildLearner(cpuJob)) as Learner;
  test('trainer + agent, one PVC per node, headless Service for rendezvous', () => {
    const sts = buildStatefulSet({ ...learner, spec: { ...learner.spec, suspend: false } }, cpuJob, config);
    expect(sts.spec?.replicas).toBe(1);
    expect(sts.spec?.serviceName).toBe('reverse-cpu-learner');
    expect(sts.spec?.template.spec?.containers.map((c) => c.name)).toEqual(['trainer', 'environment', 'agent']);
    expect(sts.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests).toEqual({ storage: '1Gi' });
    const svc = buildLearnerService(learner);
    expect(svc.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true, selector: { [LABELS.learner]: 'reverse-cpu-learner' } });
  });
});

describe('contains (skip an apply whose result is already there)', () => {
  test.each([
    ['extra defaulted fields are fine', { a: 1, b: { c: 'x', d: true } }, { b: { c: 'x' } }, true],
    ['a changed value is drift', { a: 1 }, { a: 2 }, false],
    ['arrays compare by position and length', { l: [{ n: 1, x: 0 }, { n: 2 }] }, { l: [{ n: 1 }, { n: 2 }] }, true],
    ['a missing array element is drift', { l: [{ n: 1 }] }, { l: [{ n: 1 }, { n: 2 }] }, false],
    ['quantities written as numbers match strings', { cpu: '2' }, { cpu: 2 }, true],
  ])('%s', (_name, actual, desired, expected) => {
    expect(contains(actual, desired)).toBe(expected);
  });
});
