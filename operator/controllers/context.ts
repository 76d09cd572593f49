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
  caches: Caches;
  bus: JobBus;
  events: EventSink;
  config: BuildConfig;
  log: Logger;
  /** Asks the job controller to reconcile a job (KV progress changed). */
  enqueueJob(key: string): void;
}

export const APPLIED_HASH = 'rlkube.dev/applied-hash';

/**
 * What we last wrote over which resourceVersion. The informer cache lags our own writes; without this, a
 * reconcile that runs before the watch event arrives would send the same write again.
 */
export class WriteMemo {
  private readonly last = new Map<string, { rv: string; digest: string; result: unknown }>();
  /** The result of the write, if we already wrote `digest` over the version the cache still shows. */
  recall<T>(id: string, rv: string | undefined, digest: string): T | undefined {
    const m = this.last.get(id);
    return rv !== undefined && m?.rv === rv && m.digest === digest ? (m.result as T) : undefined;
  }
  remember(id: string, rv: string | undefined, digest: string, result: unknown): void {
    if (rv === undefined) this.last.delete(id);
    else this.last.set(id, { rv, digest, result });
  }
}
const idOf = (type: ResourceType, obj: KubeObject, what = '') => `${what}${type.plural}/${obj.metadata?.namespace}/${obj.metadata?.name}`;

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
export async function applyChild<T extends KubeObject>(ctx: Pick<ControllerContext, 'client' | 'memo'>, type: ResourceType, desired: T, cached: T | undefined): Promise<T> {
  const hash = hashOf(desired);
  const stamped = { ...desired, metadata: { ...desired.metadata, annotations: { ...desired.metadata?.annotations, [APPLIED_HASH]: hash } } } as T;
  if (cached && cached.metadata?.annotations?.[APPLIED_HASH] === hash && contains(cached, desired)) return cached;
  const id = idOf(type, desired);
  const recalled = ctx.memo.recall<T>(id, cached?.metadata?.resourceVersion, hash);
  if (recalled) return recalled;
  const result = await ctx.client.apply<T>(type, stamped);
  ctx.memo.remember(id, cached?.metadata?.resourceVersion, hash, result);
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

/** Status patch (server-side apply on /status) only when the summary differs from what the object shows. */
export async function applyStatusIfChanged(ctx: Pick<ControllerContext, 'client' | 'memo'>, type: ResourceType, obj: KubeObject, status: object): Promise<boolean> {
  const digest = canonical(status);
  if (canonical(obj.status ?? {}) === digest) return false;
  const id = idOf(type, obj, 'status:');
  if (ctx.memo.recall(id, obj.metadata?.resourceVersion, digest)) return false;
  await ctx.client.apply(type, { apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata!.name, namespace: obj.metadata!.namespace }, status }, 'status');
  ctx.memo.remember(id, obj.metadata?.resourceVersion, digest, true);
  return true;
}

/** The job a pool or learner serves, if it exists and is not being deleted. */
export function liveJob(caches: Caches, namespace: string, name: string): RLJob | undefined {
  const job = caches.jobs.get(namespace, name);
  return job && !job.metadata.deletionTimestamp ? job : undefined;
}
