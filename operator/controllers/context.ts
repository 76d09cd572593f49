// What every controller is given: the API client, the informer caches, the bus, events, config, a logger.
import { createHash } from 'node:crypto';
import type { V1Deployment, V1Pod, V1Secret, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Learner, RLJob, RolloutPool } from '../../api/index.js';
import type { BusError, LearnerProgress } from '../../bus/index.js';
import { KubeApiError, type KubeClient, type KubeObject, type ResourceType } from '../kube/client.js';
import { realClock, type Clock } from '../kube/clock.js';
import type { EventSink } from '../kube/events.js';
import type { Informer } from '../kube/informer.js';
import type { BuildConfig } from './builders.js';
import type { BurstGate } from './burst-gate.js';
import type { JobCredentials } from './credentials.js';

export interface JobRef { namespace: string; name: string }

/** The bus's provisioning API as the controllers use it (operator/nats.ts implements it over NATS). */
export interface JobBus {
  /** Connects to the job's NATS (or the default), or fails (a job's own URL has a deadline). */
  connect(natsUrl?: string): Promise<void>;
  provision(job: JobRef, natsUrl?: string): Promise<void>;
  teardown(job: JobRef, natsUrl?: string): Promise<void>;
  watchProgress(job: JobRef, watcher: ProgressWatcher, natsUrl?: string): Promise<{ stop(): Promise<void> }>;
}

/** Told of the job's learner-progress records as a KV watch delivers them. */
export interface ProgressWatcher {
  onChange(progress: LearnerProgress): void;
  /** A record at `key` that does not decode (another wire version, a corrupt value) was skipped: progress looks frozen. */
  onUndecodable(key: string, err: BusError): void;
}

type K<T> = T & KubeObject;
export interface Caches {
  jobs: Informer<K<RLJob>>;
  pools: Informer<K<RolloutPool>>;
  learners: Informer<K<Learner>>;
  deployments: Informer<K<V1Deployment>>;
  statefulsets: Informer<K<V1StatefulSet>>;
  services: Informer<K<V1Service>>;
  pods: Informer<K<V1Pod>>;
  /** The jobs' NATS credentials Secrets (only when the operator issues them). */
  secrets?: Informer<K<V1Secret>>;
}

export interface ControllerContext {
  client: KubeClient;
  memo: WriteMemo;
  pacer: StatusPacer;
  caches: Caches;
  bus: JobBus;
  events: EventSink;
  config: BuildConfig;
  log: Logger;
  /** Issues and revokes the jobs' NATS credentials (absent: an open server, jobs get none). */
  credentials?: JobCredentials;
  /** Asks the job controller to reconcile a job (KV progress changed). */
  enqueueJob(key: string): void;
  /**
   * We created this object (a Learner or RolloutPool): its controller may reconcile it now, from our write,
   * rather than after the watch has delivered it (see WriteMemo.created).
   */
  created?(type: ResourceType, obj: KubeObject): void;
  /** What can wait (status, the finalizer, NATS provisioning) yields to a burst of reconciles through this. */
  gate: BurstGate;
}

export const APPLIED_HASH = 'rlkube.dev/applied-hash';

/**
 * Our writes that the informer cache has not shown yet ("expectations", as client-go's controllers keep).
 * The cache lags our own writes; a reconcile that runs before the watch event arrives would otherwise see
 * the child missing (or its old version) and send the same write again. Entries live only as long as
 * their object and at most TRUST_MS: any later event about the object, and its deletion, drop them.
 */
export class WriteMemo {
  private readonly pending = new Map<string, { digest: string; rv: string | undefined; result: unknown; at: number }>();
  private readonly unseen = new Map<string, { obj: KubeObject; at: number }>();
  /** After this long without seeing its event, a write is no longer trusted (a relist may have skipped it). */
  static readonly TRUST_MS = 30_000;

  constructor(private readonly clock: Clock = realClock) {}

  /** The result of our identical write (same digest) that the cache has not caught up with, if any. */
  recall<T>(id: string, digest: string): T | undefined {
    const p = this.pending.get(id);
    if (!p || p.digest !== digest || this.clock.now() - p.at > WriteMemo.TRUST_MS) return undefined;
    return p.result as T;
  }
  remember(id: string, digest: string, result: KubeObject): void {
    this.pending.set(id, { digest, rv: result.metadata?.resourceVersion, result, at: this.clock.now() });
  }
  /**
   * An object we created that the cache does not show yet (read-your-writes: its controller need not wait
   * for the watch to deliver it). Any event about it, the deletion included, ends this: the cache knows.
   */
  created<T extends KubeObject>(id: string): T | undefined {
    const c = this.unseen.get(id);
    if (!c) return undefined;
    if (this.clock.now() - c.at <= WriteMemo.TRUST_MS) return c.obj as T;
    this.unseen.delete(id);
    return undefined;
  }
  /** Objects we created that the cache does not show yet (a burst is not over before they are seen). */
  get createdUnseen(): number {
    // Oldest first (insertion order): drop the ones no longer trusted.
    const now = this.clock.now();
    for (const [k, c] of this.unseen) {
      if (now - c.at <= WriteMemo.TRUST_MS) break;
      this.unseen.delete(k);
    }
    return this.unseen.size;
  }
  /** Entries of either kind (for tests and the soak benchmark's view of memory). */
  get size(): number { return this.pending.size + this.unseen.size; }
  rememberCreated(id: string, obj: KubeObject): void {
    this.unseen.delete(id);
    this.unseen.set(id, { obj, at: this.clock.now() });
  }
  /**
   * The informer delivered this version of the object: writes up to it are in the cache now. (A write whose
   * own version never shows, because a relist skipped it, goes once it is no longer trusted.)
   */
  observed(obj: KubeObject, type: ResourceType): void {
    const id = idOf(type, obj);
    this.unseen.delete(id);
    const now = this.clock.now();
    for (const key of [id, idOf(type, obj, 'status:'), idOf(type, obj, 'finalizer:')]) {
      const p = this.pending.get(key);
      if (p && (p.rv === obj.metadata?.resourceVersion || now - p.at > WriteMemo.TRUST_MS)) this.pending.delete(key);
    }
  }
  /** The object is gone: nothing of it is remembered. */
  forget(obj: KubeObject, type: ResourceType): void {
    const id = idOf(type, obj);
    this.unseen.delete(id);
    for (const key of [id, idOf(type, obj, 'status:'), idOf(type, obj, 'finalizer:')]) this.pending.delete(key);
  }
}
export const idOf = (type: ResourceType, obj: KubeObject, what = '') => `${what}${type.plural}/${obj.metadata?.namespace}/${obj.metadata?.name}`;
export const idOfName = (type: ResourceType, namespace: string, name: string) => idOf(type, { metadata: { namespace, name } });

/** Does `actual` hold every value `desired` sets? (Extra fields are the API server's defaults.) */
export function contains(actual: unknown, desired: unknown): boolean {
  if (desired === null || typeof desired !== 'object') {
    return actual === desired || (actual !== undefined && actual !== null && typeof actual !== 'object' && String(actual) === String(desired));
  }
  if (Array.isArray(desired)) {
    return Array.isArray(actual) && actual.length === desired.length && desired.every((d, i) => contains(actual[i], d));
  }
  if (actual === null || typeof actual !== 'object') return false;
  return Object.entries(desired).every(([k, v]) => contains((actual as Record<string, unknown>)[k], v));
}

const hashOf = (obj: unknown) => createHash('sha256').update(JSON.stringify(obj)).digest('hex').slice(0, 16);
/** Hashes of desired objects built by `Derived` (built once per change of their inputs). */
const hashes = new WeakMap<object, string>();
/** Cached children found to match a desired hash (a cached object is replaced, never changed, by an update). */
const verified = new WeakMap<object, string>();

/**
 * A desired child, rebuilt only when one of its inputs changed: the informers replace an object on every
 * change and never modify one, so the same input objects build the same child. Most reconciles in a burst
 * (a pod or a status changed) then neither build nor hash nor compare anything.
 */
export class Derived<K extends object, D extends unknown[], T extends KubeObject | KubeObject[]> {
  private readonly memo = new WeakMap<K, { deps: D; value: T }>();
  constructor(private readonly build: (key: K, ...deps: D) => T) {}
  of(key: K, ...deps: D): T {
    const m = this.memo.get(key);
    if (m && m.deps.length === deps.length && m.deps.every((d, i) => d === deps[i])) return m.value;
    const value = this.build(key, ...deps);
    for (const v of Array.isArray(value) ? value : [value]) hashes.set(v, hashOf(v));
    this.memo.set(key, { deps, value });
    return value;
  }
}

const stampedWith = <T extends KubeObject>(desired: T, hash: string): T =>
  ({ ...desired, metadata: { ...desired.metadata, annotations: { ...desired.metadata?.annotations, [APPLIED_HASH]: hash } } });
/** A desired child as applyChild sends it: with the hash of what we want of it. */
export const stamped = <T extends KubeObject>(desired: T): T => stampedWith(desired, hashes.get(desired) ?? hashOf(desired));

/**
 * Server-side apply of a child, skipped when the cached child already is what we would apply: same hash
 * of the desired object (so a field we stopped setting still gets removed) and no drift in our fields.
 */
export async function applyChild<T extends KubeObject>(ctx: Pick<ControllerContext, 'client' | 'memo' | 'log' | 'created'>, type: ResourceType, desired: T, cached: T | undefined): Promise<T> {
  const hash = hashes.get(desired) ?? hashOf(desired);
  if (cached && verified.get(cached) === hash) return cached;
  if (cached && cached.metadata?.annotations?.[APPLIED_HASH] === hash && contains(cached, desired)) {
    verified.set(cached, hash);
    return cached;
  }
  const stamped = stampedWith(desired, hash);
  const id = idOf(type, desired);
  const recalled = ctx.memo.recall<T>(id, hash);
  if (recalled) return recalled;
  const result = await ctx.client.apply<T>(type, stamped);
  ctx.memo.remember(id, hash, result);
  if (!cached) {
    ctx.memo.rememberCreated(id, result);
    ctx.created?.(type, result);
  }
  ctx.log.debug({ kind: type.kind, name: desired.metadata?.name, namespace: desired.metadata?.namespace, created: cached === undefined }, 'applied');
  return result;
}

/** An apply the API server refuses as invalid (e.g. an immutable StatefulSet field) will not pass on retry. */
export const isInvalid = (err: unknown): err is KubeApiError => err instanceof KubeApiError && err.statusCode === 422;

/** The same JSON, whatever the order of keys (undefined values count as absent). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined) continue;
    if (!sameJson(x[k], y[k])) return false;
    n++;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}

/** JSON with sorted keys and no undefined values: the API server returns maps sorted, we build them in any order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => [k, v[k]]))
    : v));
}

/**
 * Paces status writes, like the Job controller's batch period: at most one per object per period, the
 * first one a period after the object is first seen. A write that falls due in a burst of reconciles yields
 * to it (BurstGate): status is what people read; children are what unblocks everything else.
 */
export class StatusPacer {
  private readonly next = new Map<string, number>();
  constructor(readonly periodMs: number, private readonly gate: BurstGate) {}
  /** When this object's status may be written: ms 0 is now; `untilLull`: or at the end of the burst, if sooner. */
  waitMs(id: string): { ms: number; untilLull: boolean } {
    const now = this.gate.clock.now();
    const at = this.next.get(id);
    if (at === undefined) { this.next.set(id, now + this.periodMs); return { ms: this.periodMs, untilLull: false }; }
    if (now < at) return { ms: at - now, untilLull: false };
    const ms = this.gate.yieldMs(at);
    return { ms, untilLull: ms > 0 };
  }
  wrote(id: string): void { this.next.set(id, this.gate.clock.now() + this.periodMs); }
  /** The object is gone (Manager: informer deletions): one entry per live object only. */
  forget(id: string): void { this.next.delete(id); }
  get size(): number { return this.next.size; }
}

export interface StatusWrite {
  /** The status was written now (so its condition transitions deserve Events). */
  written: boolean;
  /** A changed status waits for its pacing slot: reconcile again after this long... */
  retryAfterMs?: number;
  /** ...or when the burst it yields to is over, if sooner. */
  retryOnLull?: boolean;
}

/** Status patch (server-side apply on /status) only when the summary differs from what the object shows. */
export async function writeStatus(ctx: Pick<ControllerContext, 'client' | 'memo' | 'pacer'>, type: ResourceType, obj: KubeObject, status: object): Promise<StatusWrite> {
  if (sameJson(obj.status ?? {}, status)) return { written: false };
  const id = idOf(type, obj, 'status:');
  const wait = ctx.pacer.waitMs(id);
  if (wait.ms > 0) return { written: false, retryAfterMs: wait.ms, ...(wait.untilLull ? { retryOnLull: true } : {}) };
  const digest = canonical(status);
  if (ctx.memo.recall(id, digest)) return { written: false };
  const result = await ctx.client.apply(type, { apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata!.name, namespace: obj.metadata!.namespace }, status }, 'status');
  ctx.pacer.wrote(id);
  ctx.memo.remember(id, digest, result);
  return { written: true };
}

/** Runs again after the status write's delay, or at the end of the burst it yields to. */
export const retryOf = (write: StatusWrite) =>
  write.retryAfterMs === undefined ? undefined : { requeueAfterMs: write.retryAfterMs, ...(write.retryOnLull ? { requeueOnLull: true } : {}) };

/** The earlier of two optional delays. */
export const earliest = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));

/** The job a pool or learner serves, if it exists and is not being deleted. */
export function liveJob(caches: Caches, namespace: string, name: string): RLJob | undefined {
  const job = caches.jobs.get(namespace, name);
  return job && !job.metadata.deletionTimestamp ? job : undefined;
}
