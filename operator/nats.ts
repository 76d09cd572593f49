// The controllers' JobBus over NATS: one connection per server URL (the operator's default, or a job's
// spec.nats.url), calling the bus's provisioning API. Only the default server gets the operator's credentials.
// The default server is waited for however long it takes (nothing works without it); a job's own URL gets a
// deadline on its first connect, so an address that never answers fails that job (BusUnavailable), no other.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { connectBus, provisionJob, redactedServers, teardownJob, watchLearnerProgress } from '../bus/index.js';
import type { JobBus, JobKey, ProgressWatcher } from './controllers/context.js';
import { NotLeaderError, type WriteFence } from './kube/client.js';

/** How long a job's own NATS URL may take to answer a first connect (retried within it) before the job is told. */
export const JOB_NATS_CONNECT_DEADLINE_MS = 10_000;

export interface NatsJobBusOptions {
  /** The operator's own NATS credentials file (for the default server only). */
  credsFile?: string;
  /** A deposed leader must not create or remove a job's streams either. */
  fence?: WriteFence;
  /** First-connect deadline for a job's own URL (default JOB_NATS_CONNECT_DEADLINE_MS). */
  jobConnectDeadlineMs?: number;
}

export class NatsJobBus implements JobBus {
  private readonly connections = new Map<string, Promise<NatsConnection>>();
  private readonly connected = new Set<NatsConnection>();
  private closed = false;

  constructor(private readonly defaultUrl: string, private readonly log: Logger, private readonly options: NatsJobBusOptions = {}) {}

  private fenced(what: string): void {
    const { fence } = this.options;
    if (fence && fence.writableForMs() <= 0) throw new NotLeaderError(`${what}: not done, leadership not confirmed`);
  }

  private connection(url = this.defaultUrl): Promise<NatsConnection> {
    let nc = this.connections.get(url);
    if (!nc) {
      const servers = url.split(',').map((s) => s.trim());
      const own = url === this.defaultUrl;
      nc = connectBus({
        servers, name: 'rlkube-operator',
        ...(own && this.options.credsFile ? { credsFile: this.options.credsFile } : {}),
        ...(own ? {} : { firstConnectDeadlineMs: this.options.jobConnectDeadlineMs ?? JOB_NATS_CONNECT_DEADLINE_MS }),
      });
      nc.then(
        (up) => { if (this.closed) void up.close(); else this.connected.add(up); },
        () => this.connections.delete(url), // a failed first connect is retried on next use
      );
      this.connections.set(url, nc);
      this.log.info({ nats: redactedServers(servers) }, 'connecting to NATS');
    }
    return nc;
  }

  async connect(natsUrl?: string): Promise<void> {
    await this.connection(natsUrl);
  }

  async provision(job: JobKey, natsUrl?: string): Promise<void> {
    const nc = await this.connection(natsUrl);
    this.fenced('provision');
    await provisionJob(nc, job);
  }

  async teardown(job: JobKey, natsUrl?: string): Promise<void> {
    const nc = await this.connection(natsUrl);
    this.fenced('teardown');
    await teardownJob(nc, job);
  }

  /** A record that does not decode is logged (warn, key and reason), counted (controlDecodeFailures) and passed on. */
  async watchProgress(job: JobKey, watcher: ProgressWatcher, natsUrl?: string) {
    const log = this.log.child({ job: job.name, namespace: job.namespace });
    return watchLearnerProgress(await this.connection(natsUrl), job, (p) => watcher.onChange(p), { log, onUndecodable: (key, err) => watcher.onUndecodable(key, err) });
  }

  /** Drains the connections that are up; one still dialing (the default server waits forever) closes when it comes up. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.connected];
    this.connections.clear();
    this.connected.clear();
    await Promise.all(all.map(async (nc) => { try { await nc.drain(); } catch { /* already closed */ } }));
  }
}
