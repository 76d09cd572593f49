// The controllers' JobBus over NATS: one connection per server URL (the operator's default, or a job's
// spec.nats.url), calling the bus's provisioning API. Only the default server gets the operator's credentials.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { connectBus, provisionJob, teardownJob, watchLearnerProgress, type LearnerProgress } from '../bus/index.js';
import type { JobBus, JobRef } from './controllers/context.js';
import { NotLeaderError, type WriteFence } from './kube/client.js';

export class NatsJobBus implements JobBus {
  private readonly connections = new Map<string, Promise<NatsConnection>>();

  /** fence: a deposed leader must not create or remove a job's streams either. */
  constructor(private readonly defaultUrl: string, private readonly credsFile: string | undefined, private readonly log: Logger, private readonly fence?: WriteFence) {}

  private fenced(what: string): void {
    if (this.fence && this.fence.writableForMs() <= 0) throw new NotLeaderError(`${what}: not done, leadership not confirmed`);
  }

  private connection(url = this.defaultUrl): Promise<NatsConnection> {
    let nc = this.connections.get(url);
    if (!nc) {
      const servers = url.split(',').map((s) => s.trim());
      nc = connectBus({ servers, name: 'rlkube-operator', ...(url === this.defaultUrl && this.credsFile ? { credsFile: this.credsFile } : {}) });
      nc.catch(() => this.connections.delete(url)); // a failed first connect is retried on next use
      this.connections.set(url, nc);
      this.log.info({ nats: servers.map((s) => s.replace(/\/\/[^@/]*@/, '//')) }, 'connecting to NATS');
    }
    return nc;
  }

  async provision(job: JobRef, natsUrl?: string): Promise<void> {
    const nc = await this.connection(natsUrl);
    this.fenced('provision');
    await provisionJob(nc, job);
  }

  async teardown(job: JobRef, natsUrl?: string): Promise<void> {
    const nc = await this.connection(natsUrl);
    this.fenced('teardown');
    await teardownJob(nc, job);
  }

  async watchProgress(job: JobRef, onChange: (progress: LearnerProgress) => void, natsUrl?: string) {
    return watchLearnerProgress(await this.connection(natsUrl), job, onChange);
  }

  async close(): Promise<void> {
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map(async (p) => { try { await (await p).drain(); } catch { /* already closed */ } }));
  }
}
