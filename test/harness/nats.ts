// Test harness: a real nats-server (JetStream, file storage) per suite on a free loopback port, or a real
// 3-node JetStream cluster (routes on loopback) where replication matters.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../local/nats-server.js';
import { freePort } from '../../local/ports.js';

export { startNatsServer as startNats, type NatsServer };

export interface NatsCluster {
  nodes: NatsServer[];
  /** Every node's client URL: a client given all of them fails over when one goes. */
  urls: string[];
  stop(): Promise<void>;
}

/** Starts `size` clustered nats-servers and resolves once JetStream has a meta leader (streams can be made). */
export async function startNatsCluster(size = 3, timeoutMs = 60_000): Promise<NatsCluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const nodes = await Promise.all(
    routePorts.map((port) => startNatsServer({ cluster: { name: 'rlkube', port, routes: routePorts } })),
  );
  const cluster = { nodes, urls: nodes.map((n) => n.url), stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) };
  await waitForJetStream(cluster.urls, timeoutMs).catch(async (err: unknown) => {
    await cluster.stop();
    throw err;
  });
  return cluster;
}

/** Resolves once a JetStream API request succeeds through `urls` (a cluster answers only with a meta leader). */
export async function waitForJetStream(urls: string[], timeoutMs: number): Promise<void> {
  const nc = await connect({ servers: urls });
  const deadline = Date.now() + timeoutMs;
  try {
    for (let lastError: unknown; ; ) {
      try {
        await (await jetstreamManager(nc)).getAccountInfo();
        return;
      } catch (err) {
        lastError = err;
      }
      if (Date.now() > deadline) throw new Error(`JetStream at ${urls.join(',')} not ready within ${timeoutMs} ms: ${String(lastError)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await nc.close();
  }
}
