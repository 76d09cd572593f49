// Leader election on a Lease (on a fake clock): acquire when free or expired, never while another holder renews,
// hand over on release, step down at the renew deadline.
import pino from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeApiError, KubeClient, NotLeaderError, RESOURCES, type WriteFence } from '../../operator/kube/client.js';
import { LeaderElector, microTime, type Lease, type LeaseApi } from '../../operator/kube/leader.js';
import { FakeClock } from '../harness/clock.js';

/** An in-memory Lease store with the API server's optimistic concurrency (resourceVersion). */
class FakeLeases {
  lease?: Lease;
  rv = 0;
  client: LeaseApi = {
    get: async () => {
      if (!this.lease) throw new KubeApiError(404, 'NotFound', 'not found');
      return structuredClone(this.lease);
    },
    create: async (_t, _ns, obj) => {
      if (this.lease) throw new KubeApiError(409, 'AlreadyExists', 'exists');
      this.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
      return this.lease;
    },
    replace: async (_t, _ns, _n, obj) => {
      if (obj.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) throw new KubeApiError(409, 'Conflict', 'conflict');
      this.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
      return this.lease;
    },
  };
}

const log = pino({ level: 'silent' });
/** Renew deadline 40 ms, retry every 10 ms, on a fake clock. */
const elector = (store: FakeLeases, identity: string, clock: FakeClock, leaseDurationMs = 60) =>
  new LeaderElector(store.client, { namespace: 'ns', name: 'rlkube-operator', identity, leaseDurationMs, renewDeadlineMs: 40, retryPeriodMs: 10 }, log, clock);
/** Counts the calls of each verb on the store's client. */
function counted(store: FakeLeases): string[] {
  const calls: string[] = [];
  const { get, create, replace } = store.client;
  store.client.get = (...args) => { calls.push('get'); return get(...args); };
  store.client.create = (...args) => { calls.push('create'); return create(...args); };
  store.client.replace = (...args) => { calls.push('replace'); return replace(...args); };
  return calls;
}

describe('LeaderElector', () => {
  test('the first candidate creates the lease; a second cannot take it while it is renewed', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const a = elector(store, 'pod-a', clock);
    const b = elector(store, 'pod-b', clock);
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    expect(store.lease?.spec).toMatchObject({ holderIdentity: 'pod-a', leaseDurationSeconds: 1, leaseTransitions: 0 });
  });

  test('a lease not renewed for its duration (as this candidate observed it) is taken over, not a millisecond sooner', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    expect(await elector(store, 'pod-a', clock).tryAcquireOrRenew()).toBe(true); // leaseDurationSeconds: 1
    const b = elector(store, 'pod-b', clock);
    expect(await b.tryAcquireOrRenew()).toBe(false); // observes the record now
    await clock.advance(999);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    await clock.advance(1);
    expect(await b.tryAcquireOrRenew()).toBe(true);
    expect(store.lease?.spec).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 1 });
  });

  test('a leader renews with one write; it reads the lease again only after a conflict', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const calls = counted(store);
    const a = elector(store, 'pod-a', clock, 10_000);
    const running = a.run(() => undefined, () => undefined);
    await clock.until('three renewals', () => calls.filter((c) => c === 'replace').length >= 3);
    expect(calls.slice(0, 5)).toEqual(['get', 'create', 'replace', 'replace', 'replace']);
    store.lease = { ...store.lease!, metadata: { ...store.lease!.metadata, resourceVersion: '999' } }; // another writer
    const before = calls.length;
    await clock.until('three more calls', () => calls.length >= before + 3);
    expect(calls.slice(before, before + 3)).toEqual(['replace', 'get', 'replace']);
    await a.release();
    await running;
  });

  test('a write that lost the race (409) is not leadership', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    expect(await elector(store, 'pod-a', clock).tryAcquireOrRenew()).toBe(true);
    const b = elector(store, 'pod-b', clock);
    await b.tryAcquireOrRenew(); // observes the record
    await clock.advance(1000); // unchanged for its duration: b will try to take it
    const realGet = store.client.get;
    store.client.get = async (...args) => {
      const seen = await realGet(...args);
      store.rv++; store.lease!.metadata!.resourceVersion = String(store.rv); // pod-a renews in between
      return seen;
    };
    const calls = counted(store);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    expect(calls).toEqual(['get', 'replace']); // it did write, and the write lost
    expect(store.lease?.spec?.holderIdentity).toBe('pod-a');
  });

  test('run() leads, and release() hands the lease over at once', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const a = elector(store, 'pod-a', clock, 10_000);
    let started = 0;
    const running = a.run(() => { started++; }, () => undefined);
    await clock.until('leadership', () => a.isLeader, 0);
    expect(started).toBe(1);
    await a.release();
    await running;
    expect(store.lease?.spec?.holderIdentity).toBe('');
    expect(await elector(store, 'pod-b', clock, 10_000).tryAcquireOrRenew()).toBe(true);
  });

  test('a leader that cannot renew steps down at its renew deadline', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const a = elector(store, 'pod-a', clock);
    let stoppedAt: number | undefined;
    const running = a.run(() => {
      store.client.replace = async () => { throw new KubeApiError(500, 'InternalError', 'etcd down'); };
    }, () => { stoppedAt = clock.now(); });
    await clock.until('stepping down', () => stoppedAt !== undefined);
    await running;
    expect(stoppedAt).toBe(40); // won at 0, renew deadline 40 ms
    expect(a.isLeader).toBe(false);
  });

  test('leadership ends at the renew deadline while a renewal hangs: the fence closes and onStoppedLeading fires', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const a = elector(store, 'pod-a', clock);
    let hanging = false;
    let stoppedAt: number | undefined;
    void a.run(() => {
      // From now on every renewal hangs, as a frozen API connection would.
      const hang = () => { hanging = true; return new Promise<Lease>(() => undefined); };
      store.client.get = hang;
      store.client.replace = hang;
    }, () => { stoppedAt = clock.now(); });
    await clock.until('leadership', () => a.isLeader, 0);
    expect(a.writableForMs()).toBe(40);
    await clock.until('stepping down', () => stoppedAt !== undefined);
    expect(stoppedAt).toBe(40);
    expect(hanging).toBe(true); // the renewal call is still pending: the timer, not the loop, ended leadership
    expect(a.isLeader).toBe(false);
    expect(a.writableForMs()).toBeLessThanOrEqual(0);
  });

  test('a leader frozen past its window does not renew when it wakes: it steps down without writing', async () => {
    const store = new FakeLeases();
    const clock = new FakeClock();
    const writes: number[] = [];
    const replace = store.client.replace;
    store.client.replace = (...args) => { writes.push(clock.now()); return replace(...args); };
    const a = elector(store, 'pod-a', clock); // renew deadline 40 ms, retry 10 ms
    let stopped = false;
    void a.run(() => undefined, () => { stopped = true; });
    await clock.until('leading, and renewing', () => writes.length >= 2);
    // The whole process freezes (as SIGSTOP would) for longer than the window: every timer is overdue on waking.
    clock.freeze(100);
    const wokeAt = clock.now();
    await clock.advance(0);
    await a.release();
    expect({ stopped, writesAfterWaking: writes.filter((t) => t >= wokeAt).length }).toEqual({ stopped: true, writesAfterWaking: 0 });
    expect(a.writableForMs()).toBeLessThanOrEqual(0);
  });

  test('MicroTime has six fractional digits', () => {
    expect(microTime(new Date('2025-01-02T03:04:05.678Z'))).toBe('2025-01-02T03:04:05.678000Z');
  });
});

describe('KubeClient behind a WriteFence', () => {
  /** A stand-in API server that records what reaches it and answers writes only when told to. */
  async function apiServer(answerWrites: boolean, writeDelayMs = 0) {
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const answer = () => { res.setHeader('content-type', 'application/json'); res.end('{}'); };
      if (req.method === 'GET') answer();
      else if (answerWrites) setTimeout(answer, writeDelayMs);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
    });
    return { seen, kc, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
  }
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'ns' } };

  test('a fenced write is not sent; reads still are', async () => {
    const api = await apiServer(true);
    const client = new KubeClient(api.kc, { fence: { writableForMs: () => 0 } });
    try {
      await expect(client.apply(RESOURCES.pods, pod)).rejects.toBeInstanceOf(NotLeaderError);
      await expect(client.delete(RESOURCES.pods, 'ns', 'p')).rejects.toMatchObject({ reason: 'NotLeader' });
      await client.get(RESOURCES.pods, 'ns', 'p');
      expect(api.seen).toEqual(['GET /api/v1/namespaces/ns/pods/p']);
    } finally { client.close(); await api.close(); }
  });

  test('a slow write outlives the window it started in when a renewal moves the window on', async () => {
    const api = await apiServer(true, 400);
    let closesAt = performance.now() + 200;
    const renewed = setTimeout(() => { closesAt = performance.now() + 10_000; }, 100);
    const client = new KubeClient(api.kc, { fence: { writableForMs: () => closesAt - performance.now() }, timeoutMs: 60_000 });
    try {
      await expect(client.apply(RESOURCES.pods, pod)).resolves.toEqual({});
    } finally { clearTimeout(renewed); client.close(); await api.close(); }
  });

  test('a write that hangs is cut off when the fence closes, with NotLeader', async () => {
    const api = await apiServer(false);
    const closesAt = performance.now() + 300;
    const fence: WriteFence = { writableForMs: () => closesAt - performance.now() };
    const client = new KubeClient(api.kc, { fence, timeoutMs: 60_000 });
    try {
      const write = client.apply(RESOURCES.pods, pod);
      await expect(write).rejects.toBeInstanceOf(NotLeaderError);
      expect(api.seen).toEqual(['PATCH /api/v1/namespaces/ns/pods/p?fieldManager=rlkube-operator&force=true']);
      // Still leading: the same hang ends as a plain timeout.
      const leading = new KubeClient(api.kc, { fence: { writableForMs: () => 60_000 }, timeoutMs: 300 });
      await expect(leading.apply(RESOURCES.pods, pod)).rejects.toMatchObject({ reason: 'Timeout' });
      leading.close();
    } finally { client.close(); await api.close(); }
  });
});
