// Exactly one learner agent drives a job: a lease in the job's control KV, taken and renewed with the KV
// revision as a compare-and-set. The lease key's revision is also a fencing token: while a learner holds
// the lease, the server accepts its writes (state, progress, policy) only as long as that key is unchanged,
// so a learner that lost the lease (paused, partitioned, replaced) cannot write once another took over.
import { JetStreamApiError, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { BusError } from './errors.js';
import { WIRE_VERSION, jsonCodec } from './messages.js';
import { controlKeys, jobNames, type JobKey } from './names.js';
import { isTransient, withRetry } from './retry.js';

/** The server refused a write whose expected last sequence no longer holds (JetStream error 10071). */
export const WRONG_LAST_SEQUENCE = 10071;
export const DEFAULT_LEASE_TTL_MS = 15_000;

const LeaseSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  /** The learner agent's worker id (its pod name): a restarted pod of the same name takes over at once. */
  holder: Type.String({ minLength: 1, maxLength: 253 }),
  /** A standby takes over after seeing neither the lease nor its renewal change for this long. */
  ttlMs: Type.Integer({ minimum: 1 }),
  acquiredAt: Type.String(),
});
const RenewalSchema = Type.Object({ v: Type.Literal(WIRE_VERSION), holder: Type.String(), at: Type.String() });
const leaseCodec = jsonCodec('learner lease', LeaseSchema, 4096);
const renewalCodec = jsonCodec('learner lease renewal', RenewalSchema, 4096);

/** What a store's writes are fenced by: a KV subject whose last sequence must still be `revision`. */
export interface Fence {
  readonly subject: string;
  readonly revision: number;
  /** Throws BusError('LeaseLost') once the lease is lost or may have expired. */
  assertHeld(): void;
  /** The server refused a fenced write: the lease is gone. */
  lose(reason: string): void;
}

export interface LeaseOptions {
  /** This learner agent's worker id. */
  holder: string;
  ttlMs?: number;
  log?: Logger;
  /** Stops waiting as a standby (BusError 'Closed'). */
  signal?: AbortSignal;
}

export class LearnerLease implements Fence {
  private readonly controller = new AbortController();
  private renewing: NodeJS.Timeout | undefined;
  /** performance.now() after which this holder may no longer assume it holds the lease. */
  private validUntil: number;

  private constructor(
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    /** The lease key's subject: fenced writes expect its last sequence to be `revision`. */
    readonly subject: string,
    private readonly renewalSubject: string,
    readonly holder: string,
    readonly revision: number,
    private readonly ttlMs: number,
    acquiringSince: number,
    private readonly log: Logger | undefined,
  ) {
    this.validUntil = acquiringSince + this.margin();
  }

  /**
   * Takes the job's lease for `holder`, waiting as a standby while another learner holds it: the lease is
   * taken when it is free, when it is held under the same worker id (a restarted pod), or when neither the
   * lease nor its renewal has changed for its ttl on this process's clock (its holder is gone). Every take
   * is a compare-and-set on the revision read, so of two standbys only one wins.
   */
  static async acquire(nc: NatsConnection, job: JobKey, options: LeaseOptions): Promise<LearnerLease> {
    const names = jobNames(job);
    const kv = await withRetry('open control bucket', () => new Kvm(nc).open(names.controlBucket, { bindOnly: true }));
    const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    const retry = options.log ? { log: options.log } : {};
    let observed: { leaseRevision: number; renewalRevision: number; since: number } | undefined;
    for (;;) {
      if (options.signal?.aborted) throw new BusError('Closed', `${options.holder}: stopped while waiting for the learner lease`);
      const started = performance.now();
      const entry = await withRetry('get learner lease', () => kv.get(controlKeys.learnerLease), retry);
      const current = entry ? decodeLease(entry) : undefined;
      let take = current === undefined || current.holder === options.holder;
      if (entry && current && !take) {
        const renewal = await withRetry('get learner lease renewal', () => kv.get(controlKeys.learnerLeaseRenewal), retry);
        const seen = { leaseRevision: entry.revision, renewalRevision: renewal?.revision ?? 0 };
        if (observed?.leaseRevision !== seen.leaseRevision || observed.renewalRevision !== seen.renewalRevision) {
          if (!observed) options.log?.info({ holder: current.holder }, 'learner lease held by another learner: standing by');
          observed = { ...seen, since: started };
        } else take = started - observed.since >= current.ttlMs;
      }
      if (take) {
        const value = leaseCodec.encode({ v: WIRE_VERSION, holder: options.holder, ttlMs, acquiredAt: new Date().toISOString() });
        const revision = await compareAndSet(() => (entry ? kv.update(controlKeys.learnerLease, value, entry.revision) : kv.create(controlKeys.learnerLease, value)));
        if (revision !== undefined) {
          const lease = new LearnerLease(
            kv, jetstream(nc), names.controlSubject(controlKeys.learnerLease), names.controlSubject(controlKeys.learnerLeaseRenewal), options.holder, revision, ttlMs, started, options.log);
          options.log?.info({ holder: options.holder, revision, takenFrom: current?.holder ?? null }, 'learner lease acquired');
          await lease.renew();
          lease.renewing = setInterval(() => void lease.renew(), Math.max(50, ttlMs / 4));
          lease.renewing.unref();
          return lease;
        }
        observed = undefined; // another learner won the race: watch the new holder from now on
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(50, ttlMs / 5))));
    }
  }

  /** Aborted when the lease is lost: its holder must stop driving the job at once. */
  get lost(): AbortSignal {
    return this.controller.signal;
  }

  assertHeld(): void {
    if (!this.lost.aborted && performance.now() > this.validUntil) {
      this.lose(`not renewed for ${this.margin()} ms`);
    }
    if (this.lost.aborted) throw new BusError('LeaseLost', `${this.holder}: ${String(this.lost.reason)}`);
  }

  lose(reason: string): void {
    if (this.lost.aborted) return;
    clearInterval(this.renewing);
    this.log?.warn({ holder: this.holder, revision: this.revision, reason }, 'learner lease lost: this learner stops');
    this.controller.abort(reason);
  }

  /** Gives the lease up (end of run, clean stop): a standby takes over at once instead of after the ttl. */
  async release(): Promise<void> {
    if (this.lost.aborted) return;
    this.lose('released');
    await this.kv.delete(controlKeys.learnerLease, { previousSeq: this.revision }).catch(() => undefined);
  }

  /**
   * How long after a renewal was sent this holder still counts on the lease: two thirds of the ttl, so it
   * stops before any standby (which waits a full ttl from when it saw that renewal) can take over.
   */
  private margin(): number {
    return (this.ttlMs * 2) / 3;
  }

  /** A renewal is itself fenced: once another learner took the lease, the server refuses it. */
  private async renew(): Promise<void> {
    if (this.lost.aborted) return;
    const sentAt = performance.now();
    try {
      await this.js.publish(this.renewalSubject, renewalCodec.encode({ v: WIRE_VERSION, holder: this.holder, at: new Date().toISOString() }), {
        expect: { lastSubjectSequence: this.revision, lastSubjectSequenceSubject: this.subject },
      });
      this.validUntil = sentAt + this.margin();
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) this.lose('taken over by another learner');
      else if (!isTransient(err)) this.lose(`renewal failed: ${String(err)}`);
      else if (performance.now() > this.validUntil) this.lose(`not renewed for ${this.margin()} ms (${String(err)})`);
    }
  }
}

function decodeLease(entry: KvEntry) {
  if (entry.operation !== 'PUT' || entry.length === 0) return undefined;
  try {
    return leaseCodec.decode(entry.value);
  } catch (err) {
    if (err instanceof BusError) return undefined; // unreadable: treated as free, and overwritten by a CAS
    throw err;
  }
}

/** A KV compare-and-set: the new revision, or undefined when another writer got there first. */
async function compareAndSet(write: () => Promise<number>): Promise<number | undefined> {
  try {
    return await withRetry('take learner lease', write);
  } catch (err) {
    if (err instanceof JetStreamApiError && !isTransient(err)) return undefined;
    throw err;
  }
}
