// Leader election on a coordination.k8s.io/v1 Lease (client-node has none): one replica reconciles, the
// others wait. Expiry is judged by when this process last saw the record change, not by the holder's
// clock (client-go's rule), so clock skew between replicas does not matter. The elector is also the write
// fence: a leader may write only until renewDeadline after its last successful renewal was *sent* — a
// standby counts the (longer) lease from when it saw that renewal, which is later — and a timer, not the
// renewal loop, ends leadership at that moment, so a hung call or a frozen process cannot stretch it. A
// leader renews with one call (the lease it last wrote, by resourceVersion); it reads first only when that
// fails, so a slow API server costs it one round trip per renewal, not two.
import type { Logger } from 'pino';
import { KubeApiError, RESOURCES, isConflict, isNotFound, type KubeObject, type ResourceType, type WriteFence } from './client.js';
import { realClock, type Clock } from '../../util/clock.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  /** Who we are in the lease: the pod name. */
  identity: string;
  leaseDurationMs: number;
  /** A leader that could not renew for this long steps down. */
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_LEASE_TIMING = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

export interface Lease extends KubeObject {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** The API calls the elector makes, on its Lease only (KubeClient makes them; a test, a fake). */
export interface LeaseApi {
  get(type: ResourceType, namespace: string, name: string): Promise<Lease>;
  create(type: ResourceType, namespace: string, obj: Lease): Promise<Lease>;
  replace(type: ResourceType, namespace: string, name: string, obj: Lease): Promise<Lease>;
}

/** RFC 3339 with microseconds, as the API's MicroTime expects. */
export const microTime = (d = new Date()) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector implements WriteFence {
  private leading = false;
  private stopped = false;
  private observed?: { holder: string; renewTime: string; at: number };
  private wake?: () => void;
  /** When the last successful acquire or renewal was sent (monotonic ms). */
  private renewedAt = 0;
  /** When the write of the current round was sent, and the lease as that write left it. */
  private sentAt = 0;
  private written?: Lease;
  private cancelDeadline?: () => void;
  private stepDown?: () => void;

  /**
   * client: for the Lease only, unfenced, with a per-call limit below renewDeadlineMs (a renewal that hangs
   * past the deadline is worthless anyway).
   */
  constructor(
    private readonly client: LeaseApi,
    private readonly opts: LeaderElectionOptions,
    private readonly log: Logger,
    /** Monotonic time for the windows and the timers (the Lease's own timestamps are wall-clock, as the API wants). */
    private readonly clock: Clock = realClock,
  ) {}

  get isLeader(): boolean { return this.leading; }

  writableForMs(): number {
    return this.leading ? this.renewedAt + this.opts.renewDeadlineMs - this.clock.now() : 0;
  }

  /**
   * Campaigns until stopped. Calls onStartedLeading once on winning; calls onStoppedLeading when leadership
   * cannot be confirmed before the renew deadline (the caller should exit: its caches and in-flight work
   * assume leadership; the fence already refuses its writes).
   */
  async run(onStartedLeading: () => void, onStoppedLeading: () => void): Promise<void> {
    let lost = false;
    this.stepDown = () => {
      if (!this.leading || lost) return;
      lost = true;
      this.leading = false;
      this.cancelDeadline?.();
      this.stopped = true;
      this.wake?.();
      this.log.error({ lease: this.opts.name, renewDeadlineMs: this.opts.renewDeadlineMs }, 'lost leadership');
      onStoppedLeading();
    };
    while (!this.stopped) {
      // Woken past the window (a frozen process: this loop's timer may fire before the deadline's): the lease
      // may be another's by now; it is not ours to renew.
      if (this.leading && this.writableForMs() <= 0) { this.stepDown(); break; }
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        this.log.warn({ err: String(err), lease: this.opts.name }, 'lease update failed');
      }
      if (this.stopped) break;
      // A round that outlived the deadline confirms nothing: the timer below has fired, or is about to.
      if (ok && this.sentAt + this.opts.renewDeadlineMs > this.clock.now()) {
        this.renewedAt = this.sentAt;
        this.armDeadline();
        if (!this.leading) {
          this.leading = true;
          this.log.info({ lease: this.opts.name, identity: this.opts.identity }, 'became leader');
          onStartedLeading();
        }
      }
      await new Promise<void>((resolve) => {
        const cancel = this.clock.after(this.opts.retryPeriodMs, resolve);
        this.wake = () => { cancel(); resolve(); };
      });
    }
  }

  /** Leadership ends at renewedAt + renewDeadline unless a renewal moves it on: a timer, whatever the loop waits for. */
  private armDeadline(): void {
    this.cancelDeadline?.();
    const check = () => {
      const left = this.writableForMs();
      if (left > 0) this.cancelDeadline = this.clock.after(left, check);
      else this.stepDown?.();
    };
    this.cancelDeadline = this.clock.after(Math.max(0, this.writableForMs()), check);
  }

  private leaseBody(existing: Lease | undefined, now: Date): Lease {
    const spec = existing?.spec ?? {};
    const changedHands = spec.holderIdentity !== this.opts.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.opts.name, namespace: this.opts.namespace,
        ...(existing?.metadata?.resourceVersion ? { resourceVersion: existing.metadata.resourceVersion } : {}),
      },
      spec: {
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000),
        acquireTime: changedHands || !spec.acquireTime ? microTime(now) : spec.acquireTime,
        renewTime: microTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (changedHands && existing ? 1 : 0),
      },
    };
  }

  /** One round: true when we hold the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    if (this.leading && this.written) {
      try {
        return await this.write(() => this.client.replace(RESOURCES.leases, namespace, name, this.leaseBody(this.written, new Date())));
      } catch (err) {
        if (!isConflict(err)) throw err;
        this.written = undefined; // someone else wrote it: read it and decide as a candidate would
      }
    }
    let lease: Lease | undefined;
    try {
      lease = await this.client.get(RESOURCES.leases, namespace, name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const now = new Date();
    if (!lease) {
      try {
        return await this.write(() => this.client.create(RESOURCES.leases, namespace, this.leaseBody(undefined, now)));
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 409) return false; // someone else created it first
        throw err;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const renewTime = lease.spec?.renewTime ?? '';
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, at: this.clock.now() };
    }
    const durationMs = (lease.spec?.leaseDurationSeconds ?? this.opts.leaseDurationMs / 1000) * 1000;
    if (holder !== '' && holder !== identity && this.clock.now() < this.observed.at + durationMs) return false;
    try {
      return await this.write(() => this.client.replace(RESOURCES.leases, namespace, name, this.leaseBody(lease, now)));
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Sends a lease write, noting when it left and what it wrote. */
  private async write(send: () => Promise<Lease>): Promise<true> {
    this.sentAt = this.clock.now();
    this.written = await send();
    return true;
  }

  /** Stops campaigning and, if leading, gives the lease up so that a standby takes over at once. */
  async release(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.cancelDeadline?.();
    // Only a leader still within its window hands over: after it, another may lead already.
    if (this.writableForMs() <= 0) { this.leading = false; return; }
    this.leading = false;
    try {
      const lease = await this.client.get(RESOURCES.leases, this.opts.namespace, this.opts.name);
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      await this.client.replace(RESOURCES.leases, this.opts.namespace, this.opts.name, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime() },
      });
      this.log.info({ lease: this.opts.name }, 'released leadership');
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not release the lease');
    }
  }
}
