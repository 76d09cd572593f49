// What keeps a burst cheap: status writes paced per object, our own writes remembered until the cache shows
// them (and forgotten with their object), and bus provisioning in the background (a few at a time, after the
// queues drain, with back-off).
import pino from 'pino';
import { parseRLJobManifest, type RLJob } from '../../api/index.js';
import { JobBusLink } from '../../operator/controllers/bus-link.js';
import { Derived, StatusPacer, WriteMemo, sameJson, type JobBus } from '../../operator/controllers/context.js';
import { RESOURCES } from '../../operator/kube/client.js';
import { readExample } from '../harness/examples.js';

describe('StatusPacer', () => {
  const MAX = StatusPacer.MAX_DEFER_MS;
  test.each<[string, (p: StatusPacer) => { ms: number; untilLull: boolean }, { ms: number; untilLull: boolean }]>([
    ['the first write waits one period', (p) => p.waitMs('a', false, 0), { ms: 1000, untilLull: false }],
    ['then it may go', (p) => { p.waitMs('a', false, 0); return p.waitMs('a', false, 1000); }, { ms: 0, untilLull: false }],
    ['after a write, the next waits a period', (p) => { p.waitMs('a', false, 0); p.wrote('a', 1000); return p.waitMs('a', false, 1400); }, { ms: 600, untilLull: false }],
    ['a burst defers a due write until it is over', (p) => { p.waitMs('a', false, 0); return p.waitMs('a', true, 1000); }, { ms: MAX, untilLull: true }],
    ['but not forever', (p) => { p.waitMs('a', false, 0); return p.waitMs('a', true, 1000 + MAX); }, { ms: 0, untilLull: false }],
    ['after a lull it goes, even if the queues fill again', (p) => { p.waitMs('a', false, 0); p.waitMs('a', true, 1000); p.lull(1200); return p.waitMs('a', true, 1300); }, { ms: 0, untilLull: false }],
    ['a lull before it was due does not count', (p) => { p.waitMs('a', false, 0); p.lull(500); return p.waitMs('a', true, 1100); }, { ms: MAX - 100, untilLull: true }],
  ])('%s', (_name, run, expected) => {
    expect(run(new StatusPacer(1000))).toEqual(expected);
  });

  test('an object forgotten (deleted) leaves nothing behind', () => {
    const p = new StatusPacer(1000);
    for (let i = 0; i < 100; i++) p.waitMs(`o${i}`, false, 0);
    for (let i = 0; i < 100; i++) p.forget(`o${i}`);
    expect(p.size).toBe(0);
  });
});

describe('WriteMemo', () => {
  test('holds what we created until any event about it arrives (read-your-writes)', () => {
    const memo = new WriteMemo();
    const learner = { apiVersion: 'rlkube.dev/v1alpha1', kind: 'Learner', metadata: { name: 'j-learner', namespace: 'ns', resourceVersion: '5', uid: 'u' } };
    memo.rememberCreated('learners/ns/j-learner', learner);
    expect(memo.created('learners/ns/j-learner')).toBe(learner);
    memo.observed({ ...learner, metadata: { ...learner.metadata, resourceVersion: '9', deletionTimestamp: 'now' } }, RESOURCES.learners);
    expect(memo.created('learners/ns/j-learner')).toBeUndefined();
  });

  const obj = (rv: string) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', namespace: 'ns', resourceVersion: rv } });
  test('remembers a write until the informer delivers that version', () => {
    const memo = new WriteMemo();
    memo.remember('deployments/ns/d', 'h1', obj('7'));
    expect(memo.recall('deployments/ns/d', 'h1')).toEqual(obj('7'));
    expect(memo.recall('deployments/ns/d', 'h2')).toBeUndefined(); // a different desired object: write it
    memo.observed(obj('6'), RESOURCES.deployments); // an older event: still waiting
    expect(memo.recall('deployments/ns/d', 'h1')).toBeDefined();
    memo.observed(obj('7'), RESOURCES.deployments);
    expect(memo.recall('deployments/ns/d', 'h1')).toBeUndefined();
  });

  test('a deleted object leaves nothing behind, whatever was pending for it', () => {
    const memo = new WriteMemo();
    for (let i = 0; i < 50; i++) {
      const o = { ...obj('7'), metadata: { ...obj('7').metadata, name: `d${i}` } };
      memo.remember(`deployments/ns/d${i}`, 'h', o);
      memo.remember(`status:deployments/ns/d${i}`, 's', o);
      memo.rememberCreated(`deployments/ns/d${i}`, o);
    }
    expect(memo.size).toBe(150);
    for (let i = 0; i < 50; i++) memo.forget({ ...obj('9'), metadata: { ...obj('9').metadata, name: `d${i}` } }, RESOURCES.deployments);
    expect(memo.size).toBe(0);
  });
});

describe('no-op reconciles are cheap', () => {
  test('sameJson ignores key order and undefined values, not array order or types', () => {
    expect(sameJson({ a: 1, b: { c: [1, 2] }, d: undefined }, { b: { c: [1, 2] }, a: 1 })).toBe(true);
    expect(sameJson({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
    expect(sameJson({ a: 1 }, { a: '1' })).toBe(false);
    expect(sameJson({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(sameJson({ a: null }, {})).toBe(false);
  });

  test('a desired child is rebuilt only when one of its input objects is another one', () => {
    let builds = 0;
    const derived = new Derived((pool: { n: number }, job: { m: number }) => { builds++; return { kind: 'Deployment', metadata: { name: `d${pool.n}${job.m}` } }; });
    const pool = { n: 1 };
    const job = { m: 1 };
    const first = derived.of(pool, job);
    expect(derived.of(pool, job)).toBe(first);
    expect(builds).toBe(1);
    expect(derived.of(pool, { m: 1 }).metadata?.name).toBe('d11'); // an updated job: a new object
    expect(builds).toBe(2);
  });
});

describe('JobBusLink', () => {
  const job = (uid: string): RLJob => ({ ...parseRLJobManifest(readExample('reverse-cpu.yaml')), metadata: { name: 'reverse-cpu', namespace: 'ns', uid } });
  const waitFor = async (ok: () => boolean, timeoutMs = 2000) => {
    const deadline = Date.now() + timeoutMs;
    while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(ok()).toBe(true);
  };

  function fakeBus(failTimes = 0) {
    const calls: string[] = [];
    let running = 0;
    let maxRunning = 0;
    let failures = failTimes;
    const bus: JobBus = {
      provision: async (ref) => {
        running++; maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 10));
        running--;
        calls.push(`provision ${ref.name}`);
        if (failures-- > 0) throw new Error('nats: connection refused');
      },
      teardown: async (ref) => { calls.push(`teardown ${ref.name}`); },
      watchProgress: async (ref, onChange) => {
        calls.push(`watch ${ref.name}`);
        setTimeout(() => onChange({ step: 3 } as never), 1);
        return { stop: async () => { calls.push(`unwatch ${ref.name}`); } };
      },
    };
    return { bus, calls, maxRunning: () => maxRunning };
  }

  test('provisions in the background, then watches progress and reports back', async () => {
    const { bus, calls } = fakeBus();
    const changed: string[] = [];
    const link = new JobBusLink(bus, 2, (k) => changed.push(k), pino({ level: 'silent' }));
    expect(link.ensure('ns/reverse-cpu', job('u1'))).toEqual({ phase: 'Pending' });
    await waitFor(() => link.ensure('ns/reverse-cpu', job('u1')).phase === 'Ready');
    await waitFor(() => link.progress('ns/reverse-cpu')?.step === 3);
    expect(calls).toEqual(['provision reverse-cpu', 'watch reverse-cpu']);
    expect(changed.length).toBeGreaterThanOrEqual(2);
    await link.teardown('ns/reverse-cpu', job('u1'));
    expect(calls.slice(2)).toEqual(['unwatch reverse-cpu', 'teardown reverse-cpu']);
  });

  test('a failure is reported with a back-off, and retried after it', async () => {
    const { bus, calls } = fakeBus(1);
    const link = new JobBusLink(bus, 2, () => undefined, pino({ level: 'silent' }));
    link.ensure('ns/reverse-cpu', job('u1'));
    await waitFor(() => link.ensure('ns/reverse-cpu', job('u1')).phase === 'Failed');
    const failed = link.ensure('ns/reverse-cpu', job('u1'));
    expect(failed).toMatchObject({ phase: 'Failed', message: 'nats: connection refused' });
    expect((failed as { retryInMs: number }).retryInMs).toBeGreaterThan(0);
    // Reconciles come and go (as the controller requeues after retryInMs); the retry starts once it is due.
    await waitFor(() => link.ensure('ns/reverse-cpu', job('u1')).phase === 'Ready', 3000);
    expect(calls.filter((c) => c.startsWith('provision'))).toHaveLength(2);
    await link.close();
  });

  test('at most `concurrency` jobs provision at once, and bus work waits while Kubernetes work is queued', async () => {
    const { bus, maxRunning, calls } = fakeBus();
    let busy = true;
    let asked = 0;
    const link = new JobBusLink(bus, 2, () => undefined, pino({ level: 'silent' }), () => { asked++; return busy; });
    for (let i = 0; i < 6; i++) link.ensure(`ns/j${i}`, { ...job(`u${i}`), metadata: { name: `j${i}`, namespace: 'ns', uid: `u${i}` } });
    await waitFor(() => asked >= 6 * 3); // every job has asked three times, and was told to wait each time
    expect(calls).toEqual([]);
    busy = false;
    await waitFor(() => calls.filter((c) => c.startsWith('watch')).length === 6);
    expect(maxRunning()).toBe(2);
    await link.close();
  });
});
