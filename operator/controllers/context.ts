// What every controller is given: the API client, the informer caches, the bus, events, config, a logger.
import { createHash } from 'node:crypto';
import type { V1Deployment, V1Pod, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Learner, RLJob, RolloutPool } from '../../api/index.js';
import type { LearnerProgress } from '../../bus/index.js';
import { KubeApiError, type KubeClient, type KubeObject, type ResourceType } from '../kube/client.js';
import type { EventSink } from '../kube/events.js';
import type { Informer } from '../kube/informer.js';
import type { BuildConfig } from './builders.js';

export interface JobRef { namespace: string; name: string }

/** The bus's provisioning API as the controllers use it (operator/nats.ts implements it over NATS). */
export interface JobBus {
  provision(job: JobRef, natsUrl?: string): Promise<void>;
  teardown(job: JobRef, natsUrl?: string): Promise<void>;
  watchProgress(job: JobRef, onChange: (progress: LearnerProgress) => void, natsUrl?: string): Promise<{ stop(): Promise<void> }>;
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
  /** Asks the job controller to reconcile a job (KV progress changed). */
  enqueueJob(key: string): void;
  /** True while reconciles are waiting in any queue. */
  busy(): boolean;
}

export const APPLIED_HASH = 'rlkube.dev/applied-hash';

/**
 * Our writes that the informer cache has not shown yet ("expectations", as client-go's controllers keep).
 * The cache lags our own writes; a reconcile that runs before the watch event arrives would otherwise see
 * the child missing (or its old version) and send the same write again.
 */
export class WriteMemo {
  private readonly pending = new Map<string, { digest: string; rv: string | undefined; result: unknown; at: number }>();
  /** After this long without seeing its event, a write is no longer trusted (a relist may have skipped it). */
  static readonly TRUST_MS = 30_000;

  /** The result of our identical write (same digest) that the cache has not caught up with, if any. */
  recall<T>(id: string, digest: string): T | undefined {
    const p = this.pending.get(id);
    if (!p || p.digest !== digest || Date.now() - p.at > WriteMemo.TRUST_MS) return undefined;
    return p.result as T;
  }
  remember(id: string, digest: string, result: KubeObject): void {
    this.pending.set(id, { digest, rv: result.metadata?.resourceVersion, result, at: Date.now() });
  }
  /** The informer delivered this version of the object: writes up to it are in the cache now. */
  observed(obj: KubeObject, type: ResourceType): void {
    for (const id of [idOf(type, obj), idOf(type, obj, 'status:'), idOf(type, obj, 'finalizer:')]) {
      if (this.pending.get(id)?.rv === obj.metadata?.resourceVersion) this.pending.delete(id);
    }
  }
}
export const idOf = (type: ResourceType, obj: KubeObject, what = '') => `${what}${type.plural}/${obj.metadata?.namespace}/${obj.metadata?.name}`;

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

/**
 * Server-side apply of a child, skipped when the cached child already is what we would apply: same hash
 * of the desired object (so a field we stopped setting still gets removed) and no drift in our fields.
 */
export async function applyChild<T extends KubeObject>(ctx: Pick<ControllerContext, 'client' | 'memo' | 'log'>, type: ResourceType, desired: T, cached: T | undefined): Promise<T> {
  const hash = hashOf(desired);
  const stamped = { ...desired, metadata: { ...desired.metadata, annotations: { ...desired.metadata?.annotations, [APPLIED_HASH]: hash } } } as T;
  if (cached && cached.metadata?.annotations?.[APPLIED_HASH] === hash && contains(cached, desired)) return cached;
  const id = idOf(type, desired);
  const recalled = ctx.memo.recall<T>(id, hash);
  if (recalled) return recalled;
  const result = await ctx.client.apply<T>(type, stamped);
  ctx.memo.remember(id, hash, result);
  ctx.log.debug({ kind: type.kind, name: desired.metadata?.name, namespace: desired.metadata?.namespace, created: cached === undefined }, 'applied');
  return result;
}

/** An apply the API server refuses as invalid (e.g. an immutable StatefulSet field) will not pass on retry. */
export const isInvalid = (err: unknown): err is KubeApiError => err instanceof KubeApiError && err.statusCode === 422;

/** JSON with sorted keys and no undefined values: the API server returns maps sorted, we build them in any order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => [k, v[k]]))
    : v));
}

/**
 * Paces status writes, like the Job controller's batch period: at most one per object per period, the
 * first one a period after the object is first seen, and, while a burst of reconciles is on, after the
 * writes that create things (for at most MAX_DEFER_MS). Status is what people read; children are what
 * unblocks everything else.
 */
export class StatusPacer {
  private readonly next = new Map<string, number>();
  static readonly MAX_DEFER_MS = 5_000;
  static readonly RETRY_MS = 250;
  constructor(readonly periodMs: number) {}
  /** Milliseconds until this object's status may be written (0: now). */
  waitMs(id: string, busy: boolean, now = Date.now()): number {
    const at = this.next.get(id);
    if (at === undefined) { this.next.set(id, now + this.periodMs); return this.periodMs; }
    if (now < at) return at - now;
    return busy && now < at + StatusPacer.MAX_DEFER_MS ? StatusPacer.RETRY_MS : 0;
  }
  wrote(id: string, now = Date.now()): void { this.next.set(id, now + this.periodMs); }
  forget(id: string): void { this.next.delete(id); }
}

export interface StatusWrite {
  /** The status was written now (so its condition transitions deserve Events). */
  written: boolean;
  /** A changed status waits for its pacing slot: reconcile again after this long. */
  retryAfterMs?: number;
}

/** Status patch (server-side apply on /status) only when the summary differs from what the object shows. */
export async function writeStatus(ctx: Pick<ControllerContext, 'client' | 'memo' | 'pacer' | 'busy'>, type: ResourceType, obj: KubeObject, status: object): Promise<StatusWrite> {
  const digest = canonical(status);
  if (canonical(obj.status ?? {}) === digest) return { written: false };
  const id = idOf(type, obj, 'status:');
  if (ctx.memo.recall(id, digest)) return { written: false };
  const wait = ctx.pacer.waitMs(id, ctx.busy());
  if (wait > 0) return { written: false, retryAfterMs: wait };
  const result = await ctx.client.apply(type, { apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata!.name, namespace: obj.metadata!.namespace }, status }, 'status');
  ctx.pacer.wrote(id);
  ctx.memo.remember(id, digest, result);
  return { written: true };
}

/** The earlier of two optional delays. */
export const earliest = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));

/** The job a pool or learner serves, if it exists and is not being deleted. */
export function liveJob(caches: Caches, namespace: string, name: string): RLJob | undefined {
  const job = caches.jobs.get(namespace, name);
  return job && !job.metadata.deletionTimestamp ? job : undefined;
}
