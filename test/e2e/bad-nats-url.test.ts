// Jobs whose own spec.nats.url never answers, against a real control plane and a real operator. Invariants: they
// cost only themselves (a job on the operator's NATS applied with them is provisioned and Ready without
// waiting for them), each says Degraded/BusUnavailable naming its URL, deleting all of them completes, and a
// ws:// URL (which the Node transport cannot dial) is refused by the API server, naming the field.
import { connectBus, jobProvisioned } from '../../bus/index.js';
import { freePort } from '../../local/ports.js';
import { pollUntil, startControlPlane, type ControlPlane } from '../harness/kube.js';
import { startNats, type NatsServer } from '../harness/nats.js';
import { silentPort } from '../harness/silent-port.js';
import { cpuJob, kube, kubeJson, persistentVolumes, startOperator, type OperatorProcess } from '../harness/operator-fixtures.js';

const TEST_MS = 240_000;
type Condition = { type: string; status: string; reason: string; message?: string };
type Job = { metadata: { name: string }; status?: { conditions?: Condition[] } };

describe('jobs with an unreachable spec.nats.url (e2e)', () => {
  let cp: ControlPlane;
  let nats: NatsServer;
  let operator: OperatorProcess;
  let silent: Awaited<ReturnType<typeof silentPort>>;

  beforeAll(async () => {
    [cp, nats, silent] = await Promise.all([startControlPlane({ name: 'bad-nats-url-e2e', gpuNodes: [], cpuNodes: 1 }), startNats({}), silentPort()]);
    await kube(cp, ['apply', '--server-side', '-f', 'crds/']);
    await kube(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    await kube(cp, ['apply', '-f', '-'], persistentVolumes(8, '', 'pv-bad-nats'));
    operator = await startOperator({ kubeconfig: cp.kubeconfig, natsUrl: nats.url, identity: 'bad-nats-url-e2e-0' });
  }, TEST_MS);

  afterAll(async () => {
    await operator?.stop('SIGTERM');
    await Promise.all([cp?.stop(), nats?.stop(), silent?.close()]);
  }, 120_000);

  test('a ws:// URL is refused by the API server, naming spec.nats.url', async () => {
    const r = await cp.kubectl(['apply', '-f', '-'], JSON.stringify(cpuJob('websocket', 1, { nats: { url: 'ws://127.0.0.1:8080' } })));
    expect({ code: r.code === 0 ? 0 : 1, namesField: r.stderr.includes('spec.nats.url') }).toEqual({ code: 1, namesField: true });
  }, TEST_MS);

  test('five unreachable jobs and a good one applied together: the good one is not held up; the bad ones say why and are deleted', async () => {
    const bad: Record<string, string> = {
      'bad-closed': `nats://127.0.0.1:${await freePort()}`,
      'bad-dns': 'nats://no-such-nats.invalid:4222',
      'bad-tls': `tls://127.0.0.1:${await freePort()}`,
      'bad-silent': `nats://127.0.0.1:${silent.port}`,
      'bad-list': `nats://127.0.0.1:${await freePort()},nats://127.0.0.1:${await freePort()}`,
    };
    const names = [...Object.keys(bad), 'good'];
    const manifests = [...Object.entries(bad).map(([name, url]) => cpuJob(name, 1, { nats: { url } })), cpuJob('good', 1)];
    await kube(cp, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }));

    // One poll watches all six; each outcome is stamped with the poll it was first seen in (an order, not a time).
    const condition = (job: Job | undefined, type: string) => job?.status?.conditions?.find((c) => c.type === type);
    const provisioned = async () => {
      const nc = await connectBus({ servers: nats.url });
      try { return await jobProvisioned(nc, { namespace: 'default', name: 'good' }); } finally { await nc.close(); }
    };
    const seenAt: Record<string, number> = {};
    let poll = 0;
    const jobs = await pollUntil(async (observe) => {
      poll++;
      const byName = new Map((await kubeJson<{ items: Job[] }>(cp, ['get', 'rljobs'])).items.map((j) => [j.metadata.name, j]));
      const good = byName.get('good');
      if (seenAt.good === undefined && condition(good, 'Ready')?.status === 'True' && condition(good, 'Progressing')?.reason !== 'ProvisioningBus' && await provisioned()) seenAt.good = poll;
      for (const name of Object.keys(bad)) {
        const degraded = condition(byName.get(name), 'Degraded');
        if (seenAt[name] === undefined && degraded?.status === 'True' && degraded.reason === 'BusUnavailable') seenAt[name] = poll;
      }
      observe(JSON.stringify({ seenAt, conditions: names.map((n) => [n, byName.get(n)?.status?.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}`)]) }));
      return names.every((n) => seenAt[n] !== undefined) ? byName : undefined;
    }, { timeoutMs: 150_000, intervalMs: 250, what: 'the good job Ready with its NATS resources, and every bad job Degraded/BusUnavailable' });

    // The good job did not wait for the bad ones to resolve (before the fix it waited forever: four connects that
    // never settled held all four provisioning slots).
    expect(seenAt.good).toBeLessThanOrEqual(Math.max(...Object.keys(bad).map((n) => seenAt[n]!)));
    for (const [name, url] of Object.entries(bad)) {
      expect({ name, message: condition(jobs.get(name), 'Degraded')?.message }).toEqual({ name, message: expect.stringContaining(url) });
    }

    await kube(cp, ['delete', 'rljobs', ...names, '--wait=false']);
    await pollUntil(async (observe) => {
      const left = (await kubeJson<{ items: Job[] }>(cp, ['get', 'rljobs'])).items.map((j) => j.metadata.name);
      observe(left.join(','));
      return left.length === 0;
    }, { timeoutMs: 30_000, intervalMs: 250, what: 'all six jobs gone from the API' });
    expect(await provisioned()).toBe(false); // the good job's NATS resources went with it
    const warnings = (await kubeJson<{ items: Array<{ involvedObject: { name: string }; reason: string; message: string }> }>(cp, ['get', 'events']))
      .items.filter((e) => e.reason === 'BusUnavailable' && e.message.startsWith('NATS resources not removed')).map((e) => e.involvedObject.name);
    expect(new Set(warnings)).toEqual(new Set(Object.keys(bad)));
  }, TEST_MS);
});
