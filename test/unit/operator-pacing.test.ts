// What keeps a burst cheap: status writes paced per object, our own writes remembered until the cache shows
// them (and forgotten with their object), and bus provisioning in the background (a few at a time, after the
// queues drain, with back-off).
import pino from 'pino';
import { BusError } from '../../bus/index.js';
import { parseRLJobManifest, type RLJob } from '../../api/index.js';
import { JobBusLink } from '../../operator/controllers/bus-link.js';
import { BurstGate } from '../../operator/controllers/burst-gate.js';
import { Derived } from '../../operator/controllers/apply.js';
import type { JobBus } from '../../operator/controllers/context.js';
import { WriteMemo } from '../../operator/controllers/expectations.js';
import { sameJson } from '../../operator/controllers/json.js';
import { StatusPacer } from '../../operator/controllers/pacing.js';
import { RESOURCES, type KubeObject } from '../../operator/kube/client.js';
import { sleep } from '../../util/clock.js';
import { EventRecorder, type EventSink } from '../../operator/kube/events.js';
import { FakeClock, settle } from '../harness/clock.js';
import { readExample } from '../harness/examples.js';

describe('StatusPacer', () => {
  const MAX = BurstGate.MAX_DEFER_MS;
  /** A pacer with a 1 s period on a fake clock; `busy` says whether a burst is on. */
  function pacer() {
    const clock = new FakeClock();
    const burst = { on: false };
    const gate = new BurstGate(() => burst.on, clock);
    return { p: new StatusPacer(1000, gate), gate, burst, at: (ms: number) => clock.freeze(ms - clock.now()) };
  }
  type Pacer = ReturnType<typeof pacer>;
  test.each<[string, (s: Pacer) => { ms: number; untilLull: boolean }, { ms: number; untilLull: boolean }]>([
    ['the first write waits one period', ({ p }) => p.waitMs('a'), { ms: 1000, untilLull: false }],
    ['then it may go', ({ p, at }) => { p.waitMs('a'); at(1000); return p.waitMs('a'); }, { ms: 0, untilLull: false }],
    ['after a write, the next waits a period', ({ p, at }) => { p.waitMs('a'); at(1000); p.wrote('a'); at(1400); return p.waitMs('a'); }, { ms: 600, untilLull: false }],
    ['a burst defers a due write until it is over', ({ p, at, burst }) => { p.waitMs('a'); at(1000); burst.on = true; return p.waitMs('a'); }, { ms: MAX, untilLull: true }],
    ['but not forever', ({ p, at, burst }) => { p.waitMs('a'); burst.on = true; at(1000 + MAX); return p.waitMs('a'); }, { ms: 0, untilLull: false }],
    ['after a lull it goes, even if the queues fill again', ({ p, at, burst, gate }) => { p.waitMs('a'); at(1000); burst.on = true; p.waitMs('a'); at(1200); gate.lull(); at(1300); return p.waitMs('a'); }, { ms: 0, untilLull: false }],
    ['a lull before it was due does not count', ({ p, at, burst, gate }) => { p.waitMs('a'); at(500); gate.lull(); at(1100); burst.on = true; return p.waitMs('a'); }, { ms: MAX - 100, untilLull: true }],
  ])('%s', (_name, run, expected) => {
    expect(run(pacer())).toEqual(expected);
  });

  test('an object forgotten (deleted) leaves nothing behind', () => {
    const { p } = pacer();
    for (let i = 0; i < 100; i++) p.waitMs(`o${i}`);
    for (let i = 0; i < 100; i++) p.forget(`o${i}`);
    expect(p.size).toBe(0);
  });
});

describe('BurstGate', () => {
  test('outside a burst, work goes at once', async () => {
    const gate = new BurstGate(() => false, new FakeClock());
    await expect(gate.pass()).resolves.toBeUndefined();
  });

  test('in a burst, work waits for the lull, an event (nothing polls busy meanwhile)', async () => {
    const clock = new FakeClock();
    let asked = 0;
    const gate = new BurstGate(() => { asked++; return true; }, clock);
    let passed = false;
    void gate.pass().then(() => { passed = true; });
    await clock.advance(BurstGate.MAX_DEFER_MS - 1);
    expect({ passed, asked }).toEqual({ passed: false, asked: 1 });
    gate.lull();
    await settle();
    expect({ passed, asked, timers: clock.pending }).toEqual({ passed: true, asked: 1, timers: 0 });
  });

  test('in a burst that never drains, work goes MAX_DEFER_MS after it fell due', async () => {
    const clock = new FakeClock();
    const gate = new BurstGate(() => true, clock);
    let passedAt: number | undefined;
    await clock.advance(700);
    void gate.pass().then(() => { passedAt = clock.now(); });
    await clock.advance(BurstGate.MAX_DEFER_MS);
    expect(passedAt).toBe(700 + BurstGate.MAX_DEFER_MS);
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

  test('a write the cache never shows is trusted for TRUST_MS on the memo\'s clock, then no longer', async () => {
    const clock = new FakeClock();
    const memo = new WriteMemo(clock);
    memo.remember('deployments/ns/d', 'h1', obj('7'));
    memo.rememberCreated('deployments/ns/d', obj('7'));
    await clock.advance(WriteMemo.TRUST_MS);
    expect([memo.recall('deployments/ns/d', 'h1'), memo.created('deployments/ns/d'), memo.createdUnseen]).toEqual([obj('7'), obj('7'), 1]);
    await clock.advance(1);
    expect([memo.recall('deployments/ns/d', 'h1'), memo.created('deployments/ns/d'), memo.createdUnseen]).toEqual([undefined, undefined, 0]);
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
  const job = (name: string, url?: string): RLJob => {
    const example = parseRLJobManifest(readExample('reverse-cpu.yaml'));
    return { ...example, metadata: { name, namespace: 'ns', uid: `uid-${name}` }, spec: { ...example.spec, ...(url ? { nats: { url } } : {}) } };
  };
  const silent = pino({ level: 'silent' });
  const noEvents: EventSink = { record: () => undefined };

  /**
   * A bus on a fake clock: provisioning takes 10 ms; URLs in `silent` never answer a connect, in `failing` fail it.
   * The watch delivers step 3, then each of `undecodable` as a progress record that does not decode.
   */
  function fakeBus(clock: FakeClock, { failTimes = 0, silent = new Set<string>(), failing = new Set<string>(), undecodable = [] as BusError[] } = {}) {
    const calls: string[] = [];
    let running = 0;
    let maxRunning = 0;
    let failures = failTimes;
    const bus: JobBus = {
      connect: (url) => {
        if (url && silent.has(url)) return new Promise<void>(() => undefined);
        if (url && failing.has(url)) return Promise.reject(new BusError('Unreachable', `NATS at ${url} not reachable within 10s: connection refused`));
        return Promise.resolve();
      },
      provision: async (ref) => {
        running++; maxRunning = Math.max(maxRunning, running);
        await sleep(clock, 10);
        running--;
        calls.push(`provision ${ref.name}`);
        if (failures-- > 0) throw new Error('nats: connection refused');
      },
      teardown: async (ref) => { calls.push(`teardown ${ref.name}`); },
      watchProgress: async (ref, watcher) => {
        calls.push(`watch ${ref.name}`);
        clock.after(1, () => watcher.onChange({ step: 3 } as never));
        undecodable.forEach((err, i) => clock.after(2 + i, () => watcher.onUndecodable('learner', err)));
        return { stop: async () => { calls.push(`unwatch ${ref.name}`); } };
      },
    };
    return { bus, calls, maxRunning: () => maxRunning };
  }

  test('provisions in the background, then watches progress and reports back', async () => {
    const clock = new FakeClock();
    const { bus, calls } = fakeBus(clock);
    const changed: string[] = [];
    const link = new JobBusLink(bus, 2, (k) => changed.push(k), silent, noEvents, new BurstGate(() => false, clock));
    expect(link.ensure('ns/a', job('a'))).toEqual({ phase: 'Pending' });
    await clock.until('provisioned', () => link.ensure('ns/a', job('a')).phase === 'Ready');
    await clock.until('progress', () => link.progress('ns/a')?.step === 3);
    expect(calls).toEqual(['provision a', 'watch a']);
    expect(changed).toEqual(['ns/a', 'ns/a']); // provisioned, then progress
    await link.teardown('ns/a', job('a'));
    expect(calls.slice(2)).toEqual(['unwatch a', 'teardown a']);
  });

  test('a progress record that does not decode is a Warning Event on the job naming key and reason, not repeated', async () => {
    const clock = new FakeClock();
    const ahead = new BusError('UnsupportedVersion', 'learner progress: wire version 9, this build reads up to 1');
    const { bus } = fakeBus(clock, { undecodable: [ahead, ahead, new BusError('Malformed', 'learner progress: not JSON')] });
    const created: KubeObject[] = [];
    const events = new EventRecorder({ create: async (_type, _ns, obj) => { created.push(obj); return obj; } }, silent);
    const changed: string[] = [];
    const link = new JobBusLink(bus, 2, (k) => changed.push(k), silent, events, new BurstGate(() => false, clock));
    link.ensure('ns/a', job('a'));
    await clock.until('three records delivered', () => created.length === 2 && clock.pending === 0);
    expect(created.map((e) => ({ ...e, metadata: undefined, firstTimestamp: undefined, lastTimestamp: undefined }))).toEqual([
      expect.objectContaining({
        type: 'Warning', reason: 'UndecodableProgress',
        involvedObject: expect.objectContaining({ kind: 'RLJob', name: 'a', namespace: 'ns', uid: 'uid-a' }),
        message: expect.stringMatching(/"learner".*UnsupportedVersion.*wire version 9/),
      }),
      expect.objectContaining({ reason: 'UndecodableProgress', message: expect.stringMatching(/"learner".*Malformed/) }),
    ]);
    expect(link.progress('ns/a')?.step).toBe(3); // the last record that decoded stands
    expect(changed).toEqual(['ns/a', 'ns/a']); // provisioned, progress: a skipped record changes nothing
    await link.close();
  });

  test('a failure is reported with a back-off, and retried once it is due', async () => {
    const clock = new FakeClock();
    const { bus, calls } = fakeBus(clock, { failTimes: 1 });
    const link = new JobBusLink(bus, 2, () => undefined, silent, noEvents, new BurstGate(() => false, clock));
    link.ensure('ns/a', job('a'));
    await clock.until('the failure', () => link.ensure('ns/a', job('a')).phase === 'Failed');
    expect(link.ensure('ns/a', job('a'))).toEqual({ phase: 'Failed', message: 'nats: connection refused', retryInMs: 1000 });
    // Reconciles come and go (the controller requeues after retryInMs); the retry starts only once it is due.
    await clock.advance(999);
    expect(link.ensure('ns/a', job('a'))).toEqual({ phase: 'Failed', message: 'nats: connection refused', retryInMs: 1 });
    await clock.advance(1);
    expect(link.ensure('ns/a', job('a'))).toEqual({ phase: 'Pending' });
    await clock.until('the retry', () => link.ensure('ns/a', job('a')).phase === 'Ready');
    await link.close();
    expect(calls.filter((c) => c.startsWith('provision'))).toEqual(['provision a', 'provision a']);
  });

  test('at most `concurrency` jobs provision at once, and bus work waits for the burst to end', async () => {
    const clock = new FakeClock();
    const { bus, maxRunning, calls } = fakeBus(clock);
    const gate = new BurstGate(() => true, clock);
    const link = new JobBusLink(bus, 2, () => undefined, silent, noEvents, gate);
    for (let i = 0; i < 6; i++) link.ensure(`ns/j${i}`, job(`j${i}`));
    await clock.advance(BurstGate.MAX_DEFER_MS - 1);
    expect(calls).toEqual([]);
    gate.lull();
    await clock.until('every job watched', () => calls.filter((c) => c.startsWith('watch')).length === 6);
    expect(maxRunning()).toBe(2);
    await link.close();
  });

  test('jobs whose own NATS never answers hold no slot: another job provisions, and forgetting them returns', async () => {
    const clock = new FakeClock();
    const bad = [1, 2, 3, 4].map((i) => `nats://bad-${i}.invalid:4222`);
    const { bus, calls } = fakeBus(clock, { silent: new Set(bad) });
    const link = new JobBusLink(bus, 2, () => undefined, silent, noEvents, new BurstGate(() => false, clock));
    bad.forEach((url, i) => link.ensure(`ns/bad${i}`, job(`bad${i}`, url)));
    link.ensure('ns/good', job('good'));
    await clock.until('the good job provisioned', () => link.ensure('ns/good', job('good')).phase === 'Ready');
    for (let i = 0; i < bad.length; i++) expect(link.ensure(`ns/bad${i}`, job(`bad${i}`, bad[i]))).toEqual({ phase: 'Pending' });
    await Promise.all(bad.map((_url, i) => link.forget(`ns/bad${i}`))); // settles although the connects never do
    await link.close();
    expect(calls).toEqual(['provision good', 'watch good', 'unwatch good']);
  });

  test('a connect that fails at its deadline makes the job Failed with the reason naming the URL', async () => {
    const clock = new FakeClock();
    const url = 'nats://127.0.0.1:1';
    const { bus, calls } = fakeBus(clock, { failing: new Set([url]) });
    const link = new JobBusLink(bus, 2, () => undefined, silent, noEvents, new BurstGate(() => false, clock));
    link.ensure('ns/bad', job('bad', url));
    await clock.until('the failure', () => link.ensure('ns/bad', job('bad', url)).phase === 'Failed');
    expect(link.ensure('ns/bad', job('bad', url))).toMatchObject({ phase: 'Failed', message: expect.stringContaining(url) });
    await link.close();
    expect(calls).toEqual([]);
  });
});
