// Operator availability against a real control plane and nats-server. Invariants: of two replicas exactly
// one reconciles, and the standby takes over when the leader goes; a leader frozen past its lease writes
// nothing when it wakes (fencing, checked in the API server's audit log); an operator SIGKILLed in the middle
// of reconciling converges after restart, with no duplicate children (deterministic names, server-side apply).
import { readFileSync } from 'node:fs';
import type { RLJobStatus } from '../../api/index.js';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';
import { startNats, type NatsServer } from '../harness/nats.js';
import { cpuJob, kube, kubeJson, persistentVolumes, startOperator, type OperatorProcess } from '../harness/operator-fixtures.js';

const WAIT = { timeoutMs: 120_000, intervalMs: 500 };
/** Every write to the API server, who sent it (User-Agent) and when it arrived. */
const WRITES_AUDIT = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`;
interface AuditEvent { verb: string; userAgent?: string; requestReceivedTimestamp: string; objectRef?: { resource?: string; name?: string }; responseStatus?: { code?: number } }
const TEST_MS = 240_000;
const JOBS = 120; // enough work that a kill at the first writes lands mid-way, however fast the operator (40 were all
// made before the kill once on a quiet machine)
const FROZEN = 20; // jobs in flight when the leader is frozen

interface Obj { kind: string; metadata: { name: string; labels?: Record<string, string>; ownerReferences?: Array<{ controller?: boolean; uid: string }> } }
interface Job extends Obj { status?: RLJobStatus }
interface Lease extends Obj { spec?: { holderIdentity?: string; renewTime?: string } }

describe('rlkube operator availability (e2e)', () => {
  let cp: ControlPlane;
  let nats: NatsServer;
  const running: OperatorProcess[] = [];
  const start = async (identity: string, args: string[] = [], logLevel = 'info') => {
    const op = await startOperator({ kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity, args, logLevel });
    running.push(op);
    return op;
  };
  const holder = async () => (await kubeJson<Lease>(cp, ['get', 'lease', 'rlkube-operator', '-n', 'default'])).spec?.holderIdentity;
  const items = async (kinds: string, selector: string) => (await kubeJson<{ items: Obj[] }>(cp, ['get', kinds, '-l', selector])).items;
  const reconciled = (job: string) => pollUntil(async (observe) => {
    const j = await kubeJson<Job>(cp, ['get', 'rljob', job]);
    observe(JSON.stringify(j.status ?? {}));
    return j.status?.observedGeneration === 1 && j.status?.readyPools !== undefined ? j : undefined;
  }, { ...WAIT, what: `job ${job} to be reconciled` });

  beforeAll(async () => {
    [cp, nats] = await Promise.all([startControlPlane({ name: 'operator-ha', gpuNodes: [{ name: 'gpu-0', gpus: 8 }], cpuNodes: 2, auditPolicy: WRITES_AUDIT }), startNats({})]);
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(JOBS + FROZEN + 4, '', 'pv'));
  }, 240_000);

  afterAll(async () => {
    await Promise.all(running.map((op) => op.stop('SIGKILL')));
    await Promise.all([cp?.stop(), nats?.stop()]);
  }, 120_000);

  test('two replicas elect one leader; when it stops, the standby takes over and reconciles', async () => {
    const a = await start('replica-a', ['--lease-duration', '4']);
    const b = await start('replica-b', ['--lease-duration', '4']);
    const first = await pollUntil(async (observe) => {
      const h = await holder().catch(() => undefined);
      observe(String(h));
      return h === 'replica-a' || h === 'replica-b' ? h : undefined;
    }, { ...WAIT, what: 'one replica to hold the lease' });
    const [leader, standby] = first === 'replica-a' ? [a, b] : [b, a];
    // The leader renews three times (the standby campaigns all the while): it must keep waiting.
    const renewals = new Set<string>();
    await pollUntil(async (observe) => {
      const lease = await kubeJson<Lease>(cp, ['get', 'lease', 'rlkube-operator', '-n', 'default']);
      if (lease.spec?.holderIdentity === leader.identity && lease.spec.renewTime) renewals.add(lease.spec.renewTime);
      observe(`${renewals.size} renewals by ${leader.identity}; holder ${lease.spec?.holderIdentity}`);
      return renewals.size >= 4;
    }, { ...WAIT, what: 'the leader to renew its lease three times' });
    expect([await leader.leading(), await standby.leading()]).toEqual([true, false]);
    expect(standby.logs()).not.toContain('became leader');

    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('led-by-first')));
    await reconciled('led-by-first');

    expect(await leader.stop('SIGTERM')).toBe(0);
    expect(leader.logs()).toContain('released leadership');
    await pollUntil(async (observe) => {
      const h = await holder();
      observe(String(h));
      return h === standby.identity;
    }, { ...WAIT, what: `${standby.identity} to take the lease over` });
    expect(await standby.leading()).toBe(true);
    await kube(cp, ['apply', '-f', '-'], JSON.stringify(cpuJob('led-by-second')));
    await reconciled('led-by-second');
    await standby.stop('SIGTERM');
    await kube(cp, ['delete', 'rljobs', '--all', '--wait=false']);
  }, TEST_MS);

  test('a leader frozen (SIGSTOP) past its lease: the standby takes over, and the old leader writes nothing when it wakes', async () => {
    // A lease long enough that a busy two-core machine renews it in time (the renew deadline is two thirds of it).
    const replicas = [await start('replica-f', ['--lease-duration', '10'], 'debug'), await start('replica-g', ['--lease-duration', '10'], 'debug')];
    const first = await pollUntil(async (observe) => {
      const h = await holder().catch(() => undefined);
      observe(String(h));
      return replicas.find((r) => r.identity === h && h !== undefined);
    }, { ...WAIT, what: 'replica-f or replica-g to hold the lease' });
    const [leader, standby] = first === replicas[0] ? [replicas[0]!, replicas[1]!] : [replicas[1]!, replicas[0]!];
    const names = Array.from({ length: FROZEN }, (_, i) => `frozen-${i}`);
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: names.map((n) => cpuJob(n, 1)) }));
    // Freeze it with work in flight: at its first writes of the burst.
    await pollUntil(async () => leader.logs().includes('"msg":"applied"'), { timeoutMs: 60_000, intervalMs: 2, what: `${leader.identity} to be mid-reconcile` });
    leader.child.kill('SIGSTOP');
    await pollUntil(async (observe) => {
      const h = await holder();
      observe(String(h));
      return h === standby.identity;
    }, { ...WAIT, what: `${standby.identity} to take the lease over from the frozen ${leader.identity}` });

    const wokeAt = Date.now();
    leader.child.kill('SIGCONT');
    // It cannot confirm its leadership: it steps down and exits, as a lost lease makes it.
    expect(await leader.exited).toBe(1);
    expect(leader.logs()).toContain('lost leadership');
    const audit = readFileSync(cp.auditLog!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    const by = (r: OperatorProcess) => audit.filter((e) => e.userAgent === `rlkube-operator/${r.identity}`);
    expect(by(leader).length).toBeGreaterThan(0); // it did write while it led (the audit sees it)
    const afterWake = by(leader).filter((e) => Date.parse(e.requestReceivedTimestamp) >= wokeAt)
      .map((e) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.name} ${e.responseStatus?.code}`);
    expect(afterWake).toEqual([]);

    // The new leader finishes the burst.
    await pollUntil(async (observe) => {
      const jobs = (await kubeJson<{ items: Job[] }>(cp, ['get', 'rljobs'])).items.filter((j) => names.includes(j.metadata.name));
      const done = jobs.filter((j) => j.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      const waiting = jobs.find((j) => !done.includes(j));
      observe(`${done.length}/${names.length} jobs ready; ${waiting?.metadata.name}: ${JSON.stringify(waiting?.status?.conditions?.map((c) => `${c.type}=${c.status} ${c.reason}`))}`);
      return done.length === names.length;
    }, { ...WAIT, what: `the ${names.length} jobs to be Ready under ${standby.identity}` }).catch((err: Error) => {
      throw new Error(`${err.message}\n${standby.identity}'s log (tail):\n${standby.logs().slice(-3000)}`);
    });
    expect(by(standby).length).toBeGreaterThan(0);
    await standby.stop('SIGTERM');
    await kube(cp, ['delete', 'rljobs', '--all', '--wait=false']);
  }, TEST_MS);

  test(`an operator SIGKILLed mid-reconcile converges after restart, with no duplicate children (${JOBS} jobs)`, async () => {
    // The jobs are there before the operator starts (as after any operator restart): its first list is the burst.
    // (Applied while an operator reconciles on a loaded two-core machine, kubectl alone took past its 60 s.)
    const names = Array.from({ length: JOBS }, (_, i) => `kill-${i}`);
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: names.map((n) => cpuJob(n, 1)) }));
    // The restarted process has the same identity, as a restarted container in the same pod would.
    const first = await start('replica-c', [], 'debug');
    // Kill at its first writes: children of some jobs exist, others are still to be made.
    await pollUntil(async () => first.logs().includes('"msg":"applied"'), { timeoutMs: 60_000, intervalMs: 2, what: 'the operator to be mid-reconcile' });
    first.child.kill('SIGKILL');
    await first.exited;
    const atKill = (await items('learners,rolloutpools,deployments,statefulsets,services', 'rlkube.dev/job'))
      .filter((o) => o.metadata.labels?.['rlkube.dev/job']?.startsWith('kill-'));
    const complete = JOBS * 5;
    expect(atKill.length).toBeLessThan(complete); // really mid-way

    await start('replica-c');
    await pollUntil(async (observe) => {
      const jobs = (await kubeJson<{ items: Job[] }>(cp, ['get', 'rljobs'])).items.filter((j) => names.includes(j.metadata.name));
      const done = jobs.filter((j) => j.status?.readyPools === '1/1' && j.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      observe(`${done.length}/${JOBS} jobs ready`);
      return done.length === JOBS;
    }, { ...WAIT, what: `all ${JOBS} jobs to be Ready after the restart` });

    for (const name of names) {
      const children = await items('learners,rolloutpools,deployments,replicasets,statefulsets,services,pods', `rlkube.dev/job=${name}`);
      const byKind = (kind: string) => children.filter((c) => c.kind === kind).length;
      expect({ name, learners: byKind('Learner'), pools: byKind('RolloutPool'), deployments: byKind('Deployment'), replicaSets: byKind('ReplicaSet'),
        statefulSets: byKind('StatefulSet'), services: byKind('Service'), pods: byKind('Pod') })
        .toEqual({ name, learners: 1, pools: 1, deployments: 1, replicaSets: 1, statefulSets: 1, services: 1, pods: 2 });
      for (const child of children) expect(child.metadata.ownerReferences?.filter((r) => r.controller)).toHaveLength(1);
    }
  }, TEST_MS);
});
