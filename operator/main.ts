// rlkube-operator: parse the config, serve probes and metrics, win the leader lease, then reconcile RLJobs,
// RolloutPools and Learners until SIGTERM (which hands the lease over before exiting).
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { ConfigError, parseOperatorConfig, type OperatorConfig } from './config.js';
import { KubeClient } from './kube/client.js';
import { EventRecorder } from './kube/events.js';
import { DEFAULT_LEASE_TIMING, LeaderElector } from './kube/leader.js';
import { OperatorMetrics, serveHttp } from './kube/metrics.js';
import { Manager } from './manager.js';
import { JobIdentities, NatsAuthFileError } from './nats-auth.js';
import { NatsJobBus } from './nats.js';

function loadKubeConfig(config: OperatorConfig): KubeConfig {
  const kc = new KubeConfig();
  if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

async function main(): Promise<void> {
  let config: OperatorConfig;
  try {
    config = parseOperatorConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`rlkube-operator: invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = pino({ name: 'rlkube-operator', level: config.logLevel });
  const kc = loadKubeConfig(config);
  const le = config.leaderElection;
  const userAgent = `rlkube-operator/${le.identity}`;
  const timing = { ...DEFAULT_LEASE_TIMING, leaseDurationMs: le.leaseDurationMs, renewDeadlineMs: Math.round(le.leaseDurationMs * 2 / 3), retryPeriodMs: Math.max(500, Math.round(le.leaseDurationMs / 7)) };
  // The Lease has its own client: unfenced (it is how leadership is confirmed), each call bounded below the renew
  // deadline by a retry period (a renewal that comes back later confirms nothing anyway).
  const elector = le.enabled
    ? new LeaderElector(new KubeClient(kc, { timeoutMs: Math.max(timing.retryPeriodMs, timing.renewDeadlineMs - timing.retryPeriodMs), userAgent }), { namespace: le.leaseNamespace, name: le.leaseName, identity: le.identity, ...timing }, log)
    : undefined;
  // Everything else writes behind the elector's fence, and no call outlasts the renew deadline.
  const client = new KubeClient(kc, { userAgent, timeoutMs: elector ? timing.renewDeadlineMs : 30_000, ...(elector ? { fence: elector } : {}) });
  const metrics = new OperatorMetrics();
  metrics.trackRequests(client.calls);
  const bus = new NatsJobBus(config.natsUrl, log, { ...(config.natsCreds ? { credsFile: config.natsCreds } : {}), ...(elector ? { fence: elector } : {}) });
  let identities: JobIdentities | undefined;
  try {
    identities = config.jobCredentials
      ? new JobIdentities(config.natsUrl.split(',').map((s) => s.trim()), { creds: config.natsCreds!, ...config.jobCredentials }, log, elector)
      : undefined;
  } catch (err) {
    if (!(err instanceof NatsAuthFileError)) throw err;
    process.stderr.write(`rlkube-operator: invalid configuration: ${err.message}\n`);
    process.exit(2);
  }
  const manager = new Manager({
    kc, client, namespaces: config.namespaces, bus, events: new EventRecorder(client, log), log, metrics,
    build: { images: config.images, natsUrl: config.natsUrl },
    queue: { workers: config.workers, baseDelayMs: 250, maxDelayMs: 60_000 },
    statusPeriodMs: config.statusPeriodMs,
    ...(identities ? { identities } : {}),
  });

  const server = await serveHttp(config.metricsPort, metrics, {
    healthy: () => true,
    // A standby is ready too: it is a warm spare, and rollouts must not wait for it to lead.
    ready: () => manager.isSynced || (elector !== undefined && !elector.isLeader),
  });
  log.info({ port: (server.address() as { port: number }).port, namespaces: config.namespaces, identity: le.identity }, 'operator started');

  let stopping = false;
  const shutdown = async (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(code || 1), 20_000);
    force.unref();
    try {
      await manager.stop();
      await elector?.release();
      await bus.close();
      await identities?.close();
      client.close();
      server.close();
    } finally {
      process.exit(code);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  const lead = async () => {
    metrics.leader.set(1);
    try {
      await manager.start();
    } catch (err) {
      log.error({ err: String(err) }, 'could not start the controllers');
      await shutdown('startup-failure', 1);
    }
  };
  if (elector) {
    void elector.run(() => void lead(), () => {
      // Our caches and in-flight work assumed leadership; a clean restart is the safe way back.
      metrics.leader.set(0);
      void shutdown('lost-lease', 1);
    });
  } else {
    await lead();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`rlkube-operator: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
