// Leader election on a Lease: acquire when free or expired, never while another holder renews, hand over on release.
import pino from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeApiError, KubeClient, NotLeaderError, RESOURCES, type KubeObject, type WriteFence } from '../../operator/kube/client.js';
import { LeaderElector, microTime } from '../../operator/kube/leader.js';

/** An in-memory Lease store with the API server's optimistic concurrency (resourceVersion). */
class FakeLeases {
  lease?: KubeObject & { spec?: any };
  rv = 0;
  client = {
    get: async () => {
      if (!this.lease) throw new KubeApiError(404, 'NotFound', 'not found');
      return structuredClone(this.lease);
    },
    create: async (_t: unknown, _ns: unknown, obj: KubeObject) => {
      if (this.lease) throw new KubeApiError(409, 'AlreadyExists', 'exists');
      this.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
      return this.lease;
    },
    replace: async (_t: unknown, _ns: unknown, _n: unknown, obj: KubeObject) => {
      if (obj.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) throw new KubeApiError(409, 'Conflict', 'conflict');
      this.lease = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } };
      return this.lease;
    },
  } as unknown as KubeClient;
}

const log = pino({ level: 'silent' });
const elector = (store: FakeLeases, identity: string, leaseDurationMs = 60) =>
  new LeaderElector(store.client, { namespace: 'ns', name: 'rlkube-operator', identity, leaseDurationMs, renewDeadlineMs: 40, retryPeriodMs: 10 }, log);

describe('LeaderElector', () => {
  test('the first candidate creates the lease; a second cannot take it while it is renewed', async () => {
    const store = new FakeLeases();
    const a = elector(store, 'pod-a');
    const b = elector(store, 'pod-b');
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    expect(store.lease?.spec).toMatchObject({ holderIdentity: 'pod-a', leaseDurationSeconds: 1, leaseTransitions: 0 });
  });

  test('a lease not renewed for its duration (as this candidate observed it) is taken over', async () => {
    const store = new FakeLeases();
    expect(await elector(store, 'pod-a').tryAcquireOrRenew()).toBe(true); // leaseDurationSeconds: 1
    const b = elector(store, 'pod-b', 60);
    const firstSeen = performance.now();
    expect(await b.tryAcquireOrRenew()).toBe(false);
    // Poll as the elector does: it takes over once, and only once, the record went unchanged for a second.
    while (!(await b.tryAcquireOrRenew())) {
      if (performance.now() - firstSeen > 10_000) throw new Error('pod-b never took the expired lease over');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(performance.now() - firstSeen).toBeGreaterThanOrEqual(1000);
    expect(store.lease?.spec).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 1 });
  });

  test('a leader renews with one write; it reads the lease again only after a conflict', async () => {
    const store = new FakeLeases();
    const calls: string[] = [];
    for (const verb of ['get', 'create', 'replace'] as const) {
      const real = (store.client as any)[verb];
      (store.client as any)[verb] = (...args: unknown[]) => { calls.push(verb); return real(...args); };
    }
    const a = elector(store, 'pod-a', 10_000);
    const running = a.run(() => undefined, () => undefined);
    while (calls.filter((c) => c === 'replace').length < 3) await new Promise((r) => setTimeout(r, 2));
    expect(calls.slice(0, 5)).toEqual(['get', 'create', 'replace', 'replace', 'replace']);
    store.lease = { ...store.lease!, metadata: { ...store.lease!.metadata, resourceVersion: '999' } }; // another writer
    const before = calls.length;
    while (calls.length < before + 3) await new Promise((r) => setTimeout(r, 2));
    expect(calls.slice(before, before + 3)).toEqual(['replace', 'get', 'replace']);
    await a.release();
    await running;
  });

  test('a write that lost the race (409) is not leadership', async () => {
    const store = new FakeLeases();
    expect(await elector(store, 'pod-a').tryAcquireOrRenew()).toBe(true);
    const b = elector(store, 'pod-b', 1);
    await b.tryAcquireOrRenew(); // observes the record
    await new Promise((r) => setTimeout(r, 5));
    const realGet = store.client.get.bind(store.client);
    (store.client as any).get = async (...args: unknown[]) => {
      const seen = await (realGet as any)(...args);
      store.rv++; store.lease!.metadata!.resourceVersion = String(store.rv); // pod-a renews in between
      return seen;
    };
    expect(await b.tryAcquireOrRenew()).toBe(false);
  });

  test('run() leads, and release() hands the lease over at once', async () => {
    const store = new FakeLeases();
    const a = elector(store, 'pod-a', 10_000);
    let started = 0;
    const running = a.run(() => { started++; }, () => undefined);
    while (!a.isLeader) await new Promise((r) => setTimeout(r, 2));
    expect(started).toBe(1);
    await a.release();
    await running;
    expect(store.lease?.spec?.holderIdentity).toBe('');
    expect(await elector(store, 'pod-b', 10_000).tryAcquireOrRenew()).toBe(true);
  });

  test('a leader that cannot renew steps down', async () => {
    const store = new FakeLeases();
    const a = elector(store, 'pod-a');
    let stopped = false;
    const running = a.run(() => {
      (store.client as any).replace = async () => { throw new KubeApiError(500, 'InternalError', 'etcd down'); };
    }, () => { stopped = true; });
    await running;
    expect(stopped).toBe(true);
    expect(a.isLeader).toBe(false);
  });

  test('leadership ends at the renew deadline while a renewal hangs: the fence closes and onStoppedLeading fires', async () => {
    const store = new FakeLeases();
    const a = elector(store, 'pod-a');
    let hanging = false;
    let stopped: (() => void) | undefined;
    const stoppedLeading = new Promise<void>((resolve) => { stopped = resolve; });
    void a.run(() => {
      // From now on every renewal hangs, as a frozen API connection would.
      const hang = () => { hanging = true; return new Promise(() => undefined); };
      (store.client as any).get = hang;
      (store.client as any).replace = hang;
    }, () => stopped!());
    while (!a.isLeader) await new Promise((r) => setTimeout(r, 2));
    expect(a.writableForMs()).toBeGreaterThan(0);
    await stoppedLeading;
    expect(hanging).toBe(true); // the renewal call is still pending: the timer, not the loop, ended leadership
    expect(a.isLeader).toBe(false);
    expect(a.writableForMs()).toBeLessThanOrEqual(0);
  });

  test('a leader frozen past its window does not renew when it wakes: it steps down without writing', async () => {
    const store = new FakeLeases();
    const writes: number[] = [];
    const replace = store.client.replace.bind(store.client);
    (store.client as any).replace = (...args: Parameters<KubeClient['replace']>) => { writes.push(performance.now()); return replace(...args); };
    const a = elector(store, 'pod-a'); // renew deadline 40 ms, retry 10 ms
    let stopped: (() => void) | undefined;
    const stoppedLeading = new Promise<void>((resolve) => { stopped = resolve; });
    void a.run(() => undefined, () => stopped!());
    while (writes.length < 2) await new Promise((r) => setTimeout(r, 1)); // leading, and renewing
    // Freeze the whole process (as SIGSTOP would) for longer than the window: every timer is overdue on waking.
    const frozenAt = performance.now();
    while (performance.now() - frozenAt < 100) { /* frozen */ }
    const wokeAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      stoppedLeading.then(() => 'stepped down'),
      new Promise<string>((resolve) => { timer = setTimeout(() => resolve('still leading after 5 s'), 5000); }),
    ]);
    clearTimeout(timer);
    await a.release();
    expect({ outcome, writesAfterWaking: writes.filter((t) => t >= wokeAt).length }).toEqual({ outcome: 'stepped down', writesAfterWaking: 0 });
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
