// Leader election on a Lease: acquire when free or expired, never while another holder renews, hand over on release.
import pino from 'pino';
import { KubeApiError, type KubeClient, type KubeObject } from '../../operator/kube/client.js';
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
    expect(await b.tryAcquireOrRenew()).toBe(false);
    await new Promise((r) => setTimeout(r, 1050));
    expect(await b.tryAcquireOrRenew()).toBe(true);
    expect(store.lease?.spec).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 1 });
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

  test('MicroTime has six fractional digits', () => {
    expect(microTime(new Date('2025-01-02T03:04:05.678Z'))).toBe('2025-01-02T03:04:05.678000Z');
  });
});
