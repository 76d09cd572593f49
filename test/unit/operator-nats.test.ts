// The operator's connection to a job's own spec.nats.url: an address that cannot be reached (refused, silent,
// not resolvable) fails within a deadline with a reason and the URL, so the job says BusUnavailable and can be
// deleted; the operator's own NATS is still waited for however long it takes. And the operator's metrics count the
// progress records its watches could not decode. (A free port is a closed one: nothing listens there.)
import net from 'node:net';
import pino from 'pino';
import { BusError, controlDecodeFailures } from '../../bus/index.js';
import { OperatorMetrics } from '../../operator/kube/metrics.js';
import { freePort } from '../../local/ports.js';
import { NatsJobBus } from '../../operator/nats.js';
import { silentPort } from '../harness/silent-port.js';

/**
 * Just enough of a NATS server on a given port for a client to connect and drain: INFO on accept, PONG to
 * every PING.
 */
async function tinyNatsServer(port: number): Promise<{ close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.write('INFO {"server_id":"tiny","version":"2.10.0","proto":1,"max_payload":1048576,"headers":true}\r\n');
    socket.on('data', (data) => { for (const _ping of data.toString().matchAll(/PING\r\n/g)) socket.write('PONG\r\n'); });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }) };
}

const log = pino({ level: 'silent' });
const ref = { namespace: 'ns', name: 'bad' };
const failureOf = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => err);

describe('NatsJobBus with a job URL that cannot be reached', () => {
  let silent: Awaited<ReturnType<typeof silentPort>>;
  beforeAll(async () => { silent = await silentPort(); });
  afterAll(async () => { await silent.close(); });

  test.each<[string, () => Promise<string>]>([
    ['a closed port', async () => `nats://127.0.0.1:${await freePort()}`],
    ['TLS to a closed port', async () => `tls://127.0.0.1:${await freePort()}`],
    ['a port that never answers', async () => `nats://127.0.0.1:${silent.port}`],
    ['a host that does not resolve', async () => 'nats://no-such-host.invalid:4222'],
    ['a list of closed ports', async () => `nats://127.0.0.1:${await freePort()},nats://127.0.0.1:${await freePort()}`],
  ])('%s: provision and teardown fail at the deadline with Unreachable, naming the URL', async (_name, urlOf) => {
    const url = await urlOf();
    const bus = new NatsJobBus('nats://127.0.0.1:4222', log, { jobConnectDeadlineMs: 1_000 });
    for (const failure of [await failureOf(bus.provision(ref, url)), await failureOf(bus.teardown(ref, url))]) {
      expect(failure).toBeInstanceOf(BusError);
      expect(failure).toMatchObject({ reason: 'Unreachable', message: expect.stringContaining(url) });
    }
    await bus.close();
  }, 15_000);

  test('the operator\'s own NATS is waited for: still dialing when a job URL has failed, connected once it comes', async () => {
    const ownPort = await freePort();
    const bus = new NatsJobBus(`nats://127.0.0.1:${ownPort}`, log, { jobConnectDeadlineMs: 500 });
    let ownSettled = false;
    const own = bus.connect().finally(() => { ownSettled = true; });
    expect(await failureOf(bus.connect(`nats://127.0.0.1:${await freePort()}`))).toMatchObject({ reason: 'Unreachable' });
    expect(ownSettled).toBe(false);
    const server = await tinyNatsServer(ownPort);
    await expect(own).resolves.toBeUndefined();
    await bus.close();
    await server.close();
  }, 15_000);
});

test('the operator\'s /metrics counts control records its watches skipped, by key and reason', async () => {
  const metrics = new OperatorMetrics();
  controlDecodeFailures.inc({ key: 'learner', reason: 'UnsupportedVersion' });
  expect(await metrics.registry.metrics()).toMatch(/^rlkube_control_decode_failures_total\{key="learner",reason="UnsupportedVersion"\} [1-9]/m);
});
