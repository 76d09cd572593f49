// Status summaries are pure: children, pods and learner progress in; conditions with reasons out.
import type { V1Pod } from '@kubernetes/client-node';
import { parseRLJobManifest, type Condition, type Learner, type RLJob, type RolloutPool } from '../../api/index.js';
import type { LearnerProgress } from '../../bus/index.js';
import { mergeConditions, transitions } from '../../operator/controllers/conditions.js';
import { jobTimers, summarizeJob } from '../../operator/controllers/rljob.js';
import { summarizePool } from '../../operator/controllers/rolloutpool.js';
import { schedulingProblem } from '../../operator/controllers/pods.js';
import { readExample } from '../harness/examples.js';

const T0 = new Date('2025-06-01T10:00:00Z');
const later = (s: number) => new Date(T0.getTime() + s * 1000);
const base = parseRLJobManifest(readExample('reverse-cpu.yaml'));
const job = (patch: Partial<RLJob['spec']> = {}, status?: RLJob['status']): RLJob =>
  ({ ...base, metadata: { name: 'reverse-cpu', namespace: 'ns', uid: 'u', generation: 3 }, spec: { ...base.spec, ...patch }, ...(status ? { status } : {}) });
const cond = (type: string, status: 'True' | 'False', reason = 'R', message = ''): Condition => ({ type, status, reason, message, lastTransitionTime: T0.toISOString() });
const withConditions = <T extends object>(obj: T, conditions: Condition[]) => ({ ...obj, status: { conditions } });
const readyLearner = withConditions({ metadata: { name: 'reverse-cpu-learner' } } as Learner, [cond('Ready', 'True'), cond('Degraded', 'False')]);
const readyPool = withConditions({ metadata: { name: 'reverse-cpu-cpu' } } as RolloutPool, [cond('Ready', 'True'), cond('Degraded', 'False')]);
const gpuShortPool = withConditions({ metadata: { name: 'reverse-cpu-big' } } as RolloutPool,
  [cond('Ready', 'False'), cond('Degraded', 'True', 'InsufficientGPU', '2/2 pods cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.')]);
const progress = (p: Partial<LearnerProgress>): LearnerProgress => ({
  v: 1, step: 12, maxSteps: 150, state: 'Running', policyVersion: 12, reward: 0.5, groups: { accepted: 10, stale: 1, rejected: 0, published: 11 },
  rejectedByReason: {}, updatedAt: T0.toISOString(), ...p,
} as LearnerProgress);
const get = (conditions: Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);

describe('summarizeJob', () => {
  test.each<[string, Parameters<typeof summarizeJob>[0], Record<string, [string, string]>, string]>([
    ['the bus is being provisioned', { job: job(), pools: [], bus: { phase: 'Pending' }, now: T0 },
      { Progressing: ['True', 'ProvisioningBus'] }, 'Pending'],
    ['a new job waits for its learner', { job: job(), pools: [], bus: { phase: 'Ready' }, now: T0 },
      { Ready: ['False', 'LearnerNotReady'], Progressing: ['True', 'Starting'], Suspended: ['False', 'JobResumed'], Degraded: ['False', 'AsExpected'] }, 'Pending'],
    ['all children ready and training', { job: job(), learner: readyLearner, pools: [readyPool], progress: progress({}), now: T0 },
      { Ready: ['True', 'AllChildrenReady'], Progressing: ['True', 'Training'] }, 'Running'],
    ['suspended', { job: job({ suspend: true }), learner: readyLearner, pools: [readyPool], now: T0 },
      { Ready: ['False', 'Suspended'], Progressing: ['False', 'Suspended'], Suspended: ['True', 'JobSuspended'] }, 'Suspended'],
    ['a pool short of GPUs degrades the job', { job: job(), learner: readyLearner, pools: [readyPool, gpuShortPool], now: T0 },
      { Ready: ['False', 'PoolsNotReady'], Degraded: ['True', 'PoolInsufficientGPU'] }, 'Degraded'],
    ['the bus is down', { job: job(), pools: [], bus: { phase: 'Failed', message: 'connection refused', retryInMs: 1000 }, now: T0 },
      { Degraded: ['True', 'BusUnavailable'] }, 'Degraded'],
    ['the learner reached maxSteps', { job: job(), learner: readyLearner, pools: [readyPool], progress: progress({ state: 'Succeeded', step: 150 }), now: T0 },
      { Succeeded: ['True', 'MaxStepsReached'], Ready: ['False', 'Finished'], Progressing: ['False', 'Finished'] }, 'Succeeded'],
    ['an environment that cannot be used as written', {
      job: job(), pools: [], bus: { phase: 'Ready' }, now: T0,
      environment: { reason: 'InvalidEnvironmentArgs', field: 'environment.args.minLength', message: 'environment.args.minLength: 5 is above environment.args.maxLength 3' },
    }, { Ready: ['False', 'InvalidEnvironmentArgs'], Degraded: ['True', 'InvalidEnvironmentArgs'] }, 'Degraded'],
    ['an agent found its environment unusable', { job: job(), pools: [], progress: progress({ state: 'Failed', message: 'DatasetUnreadable: environment.dataset: x.txt: line 1 is not JSON' }), now: T0 },
      { Failed: ['True', 'LearnerFailed'] }, 'Failed'],
    ['the learner failed', { job: job(), pools: [], progress: progress({ state: 'Failed', message: 'NaN loss' }), now: T0 },
      { Failed: ['True', 'LearnerFailed'] }, 'Failed'],
    ['the deadline passed', { job: job({ activeDeadlineSeconds: 60 }, { startTime: T0.toISOString() }), pools: [], now: later(61) },
      { Failed: ['True', 'DeadlineExceeded'] }, 'Failed'],
  ])('%s', (_name, observation, expected, summary) => {
    const status = summarizeJob(observation);
    for (const [type, [s, reason]] of Object.entries(expected)) {
      expect(get(status.conditions, type)).toMatchObject({ status: s, reason, observedGeneration: 3 });
    }
    expect(status.summary).toBe(summary);
    expect(status.observedGeneration).toBe(3);
  });

  test('progress fields for the printer columns', () => {
    const status = summarizeJob({ job: job(), learner: readyLearner, pools: [readyPool, gpuShortPool], progress: progress({}), now: T0 });
    expect(status).toMatchObject({ step: 12, maxSteps: 150, progress: '12/150', policyVersion: 12, reward: 0.5, readyPools: '1/2' });
    expect(status.groups).toEqual({ accepted: 10, stale: 1, rejected: 0, published: 11 });
  });

  test('every rejection counted by reason, as the learner counted it', () => {
    const counted = progress({ groups: { accepted: 10, stale: 1, rejected: 3, published: 14 }, rejectedByReason: { Copied: 1, BadSignature: 2 } });
    const status = summarizeJob({ job: job(), learner: readyLearner, pools: [readyPool], progress: counted, now: T0 });
    expect(status.rejectedByReason).toEqual({ Copied: 1, BadSignature: 2 });
    // kept while the learner's record is away (e.g. the bus restarting)
    expect(summarizeJob({ job: { ...job(), status }, learner: readyLearner, pools: [readyPool], now: T0 }).rejectedByReason).toEqual({ Copied: 1, BadSignature: 2 });
  });

  test('no reward yet (null before the first step) leaves the field out', () => {
    expect(summarizeJob({ job: job(), pools: [], progress: progress({ reward: null, step: 0 }), now: T0 }).reward).toBeUndefined();
  });

  test('the same observation later gives an identical status (nothing to write)', () => {
    const first = summarizeJob({ job: job(), learner: readyLearner, pools: [readyPool], progress: progress({}), now: T0 });
    const again = summarizeJob({ job: job({}, first), learner: readyLearner, pools: [readyPool], progress: progress({}), now: later(30) });
    expect(again).toEqual(first);
  });

  test('finished is final: a later Running record does not undo Failed', () => {
    const failed = summarizeJob({ job: job(), pools: [], progress: progress({ state: 'Failed' }), now: T0 });
    const after = summarizeJob({ job: job({}, failed), pools: [], progress: progress({ state: 'Running' }), now: later(5) });
    expect(get(after.conditions, 'Failed')?.status).toBe('True');
    expect(after.completionTime).toBe(failed.completionTime);
  });

  test('suspension clears startTime, so the deadline counts active time only', () => {
    const running = summarizeJob({ job: job({ activeDeadlineSeconds: 60 }), pools: [], now: T0 });
    expect(running.startTime).toBeDefined();
    const suspended = summarizeJob({ job: job({ activeDeadlineSeconds: 60, suspend: true }, running), pools: [], now: later(120) });
    expect(suspended.startTime).toBeUndefined();
    expect(get(suspended.conditions, 'Failed')).toBeUndefined();
  });
});

describe('jobTimers', () => {
  const finished = (at: Date) => ({ completionTime: at.toISOString(), conditions: [cond('Succeeded', 'True')] });
  test.each<[string, RLJob, RLJob['status'] & object, Date, ReturnType<typeof jobTimers>]>([
    ['no deadline, no TTL', job(), { startTime: T0.toISOString() }, T0, { deleteNow: false }],
    ['deadline ahead → come back then', job({ activeDeadlineSeconds: 60 }), { startTime: T0.toISOString() }, later(20), { deleteNow: false, requeueAfterMs: 40_050 }],
    ['suspended: no deadline timer', job({ activeDeadlineSeconds: 60, suspend: true }), {}, later(20), { deleteNow: false }],
    ['finished, TTL ahead', job({ ttlSecondsAfterFinished: 600 }), finished(T0), later(100), { deleteNow: false, requeueAfterMs: 500_000 }],
    ['finished, TTL elapsed → delete', job({ ttlSecondsAfterFinished: 600 }), finished(T0), later(600), { deleteNow: true }],
    ['finished, no TTL: keep', job(), finished(T0), later(1e6), { deleteNow: false }],
  ])('%s', (_name, j, status, now, expected) => {
    expect(jobTimers(j, status, now)).toEqual(expected);
  });
});

const pod = (name: string, opts: { node?: string; ready?: boolean; unschedulable?: string }): V1Pod => ({
  metadata: { name },
  spec: { containers: [], ...(opts.node ? { nodeName: opts.node } : {}) },
  status: {
    conditions: [
      ...(opts.unschedulable ? [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: opts.unschedulable }] : []),
      ...(opts.ready ? [{ type: 'Ready', status: 'True' }] : []),
    ],
  },
});

describe('schedulingProblem', () => {
  test.each([
    ['all scheduled', [pod('a', { node: 'n', ready: true })], undefined],
    ['GPU shortage', [pod('a', { unschedulable: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }), pod('b', { node: 'n' })], 'InsufficientGPU'],
    ['another reason', [pod('a', { unschedulable: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector." })], 'Unschedulable'],
  ])('%s', (_name, pods, reason) => {
    expect(schedulingProblem(pods)?.reason).toBe(reason);
  });

  test('the message counts the stuck pods', () => {
    expect(schedulingProblem([pod('a', { unschedulable: 'Insufficient nvidia.com/gpu' }), pod('b', { node: 'n' })])?.message)
      .toMatch(/^1\/2 pods cannot be scheduled: Insufficient nvidia\.com\/gpu/);
  });
});

describe('summarizePool', () => {
  const pool = (suspend = false): RolloutPool => ({
    apiVersion: 'rlkube.dev/v1alpha1', kind: 'RolloutPool', metadata: { name: 'p', namespace: 'ns', generation: 2 },
    spec: { jobRef: { name: 'reverse-cpu' }, suspend, replicas: 2, engine: { kind: 'tiny', gpus: 0 }, agent: {} },
  });
  test.each<[string, Parameters<typeof summarizePool>[0], Record<string, [string, string]>]>([
    ['no such job', { pool: pool(), pods: [], now: T0 }, { Ready: ['False', 'JobNotFound'], Degraded: ['True', 'JobNotFound'] }],
    ['all replicas ready', { pool: pool(), job: job(), pods: [pod('a', { node: 'n', ready: true }), pod('b', { node: 'n', ready: true })], now: T0 },
      { Ready: ['True', 'AllReplicasReady'], Degraded: ['False', 'AsExpected'], Suspended: ['False', 'Running'] }],
    ['not enough GPUs', { pool: pool(), job: job(), pods: [pod('a', { unschedulable: '3 Insufficient nvidia.com/gpu' })], now: T0 },
      { Ready: ['False', 'ReplicasNotReady'], Degraded: ['True', 'InsufficientGPU'] }],
    ['suspended pool', { pool: pool(true), job: job(), pods: [], now: T0 }, { Ready: ['False', 'Suspended'], Suspended: ['True', 'Suspended'] }],
    ['job suspended', { pool: pool(), job: job({ suspend: true }), pods: [], now: T0 }, { Suspended: ['True', 'Suspended'] }],
  ])('%s', (_name, observation, expected) => {
    const status = summarizePool(observation);
    for (const [type, [s, reason]] of Object.entries(expected)) expect(get(status.conditions, type)).toMatchObject({ status: s, reason });
    expect(status.selector).toBe('rlkube.dev/pool=p');
  });
});

describe('conditions', () => {
  test('lastTransitionTime moves only when the status changes; transitions() lists those', () => {
    const first = mergeConditions(undefined, [{ type: 'Ready', status: 'False', reason: 'A' }], 1, T0);
    const sameStatus = mergeConditions(first, [{ type: 'Ready', status: 'False', reason: 'B', message: 'm' }], 2, later(10));
    expect(sameStatus[0]).toMatchObject({ reason: 'B', lastTransitionTime: first[0]!.lastTransitionTime, observedGeneration: 2 });
    const flipped = mergeConditions(sameStatus, [{ type: 'Ready', status: 'True', reason: 'C' }], 2, later(20));
    expect(flipped[0]!.lastTransitionTime).toBe('2025-06-01T10:00:20Z');
    expect(transitions(sameStatus, flipped).map((c) => c.type)).toEqual(['Ready']);
    expect(transitions(first, sameStatus)).toEqual([]);
  });
});
