// Pod-level overrides (env, envFrom, volumes and mounts, pull secrets, affinity, priority, service account):
// each lands in the pods an RLJob makes, the operator's own fields win, and every name it uses is reserved.
import type { V1PodSpec } from '@kubernetes/client-node';
import { EnvVar, Volume, VolumeMount, parseRLJobManifest, validate, type Learner, type PodOverrides, type RLJob, type RolloutPool } from '../../api/index.js';
import type { BuildConfig } from '../../operator/controllers/builders.js';
import { buildStatefulSet } from '../../operator/controllers/learner.js';
import { withPodOverrides } from '../../operator/controllers/pod-overrides.js';
import { buildLearner, buildPools } from '../../operator/controllers/rljob.js';
import { buildDeployment } from '../../operator/controllers/rolloutpool.js';
import { readExample } from '../harness/examples.js';
import { podOverrides } from '../harness/pod-overrides.js';

const config: BuildConfig = { images: { agent: 'agent:1', trainer: 'trainer:1', vllm: 'vllm:1' }, natsUrl: 'nats://nats:4222', jobCredentials: true };
const served = <T extends { metadata: object }>(obj: T): T => ({ ...obj, metadata: { ...obj.metadata, namespace: 'team', uid: 'child-uid', generation: 1 } });
function job(example: string, overrides: Record<string, unknown> = {}): RLJob {
  const parsed = parseRLJobManifest(readExample(example));
  const spec = { ...parsed.spec, rollout: { pools: parsed.spec.rollout.pools.map((p) => ({ ...p, ...overrides })) }, learner: { ...parsed.spec.learner, ...overrides } };
  return { ...parsed, metadata: { ...parsed.metadata, namespace: 'team', uid: 'job-uid', generation: 1 }, spec: parseRLJobManifest(JSON.stringify({ ...parsed, spec })).spec };
}
const poolPod = (j: RLJob): V1PodSpec => buildDeployment(served(buildPools(j)[0]!) as RolloutPool, j, config).spec!.template.spec!;
const learnerPod = (j: RLJob): V1PodSpec => buildStatefulSet(served(buildLearner(j)) as Learner, j, config).spec!.template.spec!;

describe('pod overrides', () => {
  const overridden = job('reverse-cpu.yaml', podOverrides());

  test.each([['rollout pool', poolPod], ['learner', learnerPod]] as const)('every override of an RLJob reaches its %s pods', (_kind, podOf) => {
    const pod = podOf(overridden);
    const expected = podOverrides();
    expect(pod).toMatchObject({
      imagePullSecrets: expected.imagePullSecrets, affinity: expected.affinity,
      priorityClassName: 'rl-high', serviceAccountName: 'rl-runner',
    });
    expect(pod.volumes).toContainEqual({ name: 'cache', persistentVolumeClaim: { claimName: 'model-cache' } });
    expect(pod.containers.length).toBeGreaterThanOrEqual(2);
    for (const c of pod.containers) {
      const names = c.env!.map((e) => e.name);
      // the user's variables come after the operator's, in their order
      expect({ container: c.name, tail: names.slice(-3) }).toEqual({ container: c.name, tail: ['HF_HOME', 'HF_TOKEN', 'RUN_TAG'] });
      expect(c.env).toContainEqual(expected.env[1]);
      expect(c.envFrom).toEqual(expected.envFrom);
      expect(c.volumeMounts).toContainEqual({ name: 'cache', mountPath: '/cache' });
    }
    const agent = pod.containers.find((c) => c.name === 'agent')!.env!.map((e) => e.name);
    expect(agent.indexOf('RUN_TAG')).toBeGreaterThan(agent.indexOf('RLKUBE_JOB'));
  });

  test('the RLJob carries the overrides to its RolloutPool and Learner children as written', () => {
    const { name: _name, ...poolSpec } = overridden.spec.rollout.pools[0]!;
    expect(buildPools(overridden)[0]!.spec).toMatchObject(poolSpec);
    expect(buildLearner(overridden).spec).toMatchObject(overridden.spec.learner);
    expect(buildLearner(overridden).spec.volumeMounts).toEqual([{ name: 'cache', mountPath: '/cache' }]);
  });

  test('no overrides: the pod spec is what it was (an operator upgrade rolls no pod)', () => {
    const plain = job('gsm8k-gpu.yaml');
    for (const pod of [poolPod(plain), learnerPod(plain)]) {
      expect(withPodOverrides(pod, {})).toEqual(pod);
      expect(pod).not.toHaveProperty('affinity');
      expect(pod).not.toHaveProperty('serviceAccountName');
      expect(pod.containers.every((c) => c.envFrom === undefined)).toBe(true);
    }
  });

  test('where an override clashes with the operator (validation refuses it; the builder holds anyway), the operator wins', () => {
    const base = poolPod(job('reverse-cpu.yaml'));
    const clash = {
      env: [{ name: 'RLKUBE_JOB', value: 'someone-else' }, { name: 'EXTRA', value: '1' }],
      volumes: [{ name: 'tmp', hostPath: { path: '/' } }, { name: 'cache', emptyDir: {} }],
      volumeMounts: [{ name: 'cache', mountPath: '/tmp' }, { name: 'policies', mountPath: '/steal' }, { name: 'cache', mountPath: '/cache' }],
      serviceAccountName: 'admin',
    } as unknown as PodOverrides;
    const pod = withPodOverrides(base, clash);
    const agent = pod.containers.find((c) => c.name === 'agent')!;
    expect(agent.env!.filter((e) => e.name === 'RLKUBE_JOB')).toEqual([{ name: 'RLKUBE_JOB', value: 'reverse-cpu' }]);
    expect(agent.env!.at(-1)).toEqual({ name: 'EXTRA', value: '1' });
    expect(pod.volumes!.filter((v) => v.name === 'tmp')).toEqual([{ name: 'tmp', emptyDir: {} }]);
    for (const c of pod.containers) {
      expect(c.volumeMounts!.filter((m) => m.mountPath === '/tmp')).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
      expect(c.volumeMounts!.some((m) => m.mountPath === '/steal')).toBe(false);
      expect(c.volumeMounts).toContainEqual({ name: 'cache', mountPath: '/cache' });
    }
    // what no override reaches: the pod's security and the API token
    expect(pod).toMatchObject({ serviceAccountName: 'admin', automountServiceAccountToken: false, securityContext: base.securityContext });
  });

  test('every env name, volume name and mount path the operator uses is reserved (a user cannot set it)', () => {
    const pods = [poolPod(job('reverse-cpu.yaml')), learnerPod(job('reverse-cpu.yaml')), poolPod(job('gsm8k-gpu.yaml')), learnerPod(job('gsm8k-gpu.yaml'))];
    const containers = pods.flatMap((p) => [...p.containers, ...(p.initContainers ?? [])]);
    const env = new Set(containers.flatMap((c) => (c.env ?? []).map((e) => e.name)));
    const volumes = new Set(pods.flatMap((p) => (p.volumes ?? []).map((v) => v.name)).concat('checkpoints'));
    const paths = new Set(containers.flatMap((c) => (c.volumeMounts ?? []).map((m) => m.mountPath)));
    expect(env.size).toBeGreaterThan(10);
    const accepted = [
      ...[...env].filter((name) => validate(EnvVar, { name, value: 'x' }).length === 0).map((n) => `env ${n}`),
      ...[...volumes].filter((name) => validate(Volume, { name, emptyDir: {} }).length === 0).map((n) => `volume ${n}`),
      ...[...paths].filter((mountPath) => validate(VolumeMount, { name: 'data', mountPath }).length === 0).map((p) => `mountPath ${p}`),
    ];
    expect(accepted).toEqual([]); // add these to RESERVED in api/pod-overrides.ts
  });
});
