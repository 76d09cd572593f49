// Writing a child: server-side apply of what we want of it, skipped when the cached child already is that (the
// hash of the desired object, stamped on the child, and no drift in our fields).
import { createHash } from 'node:crypto';
import { KubeApiError, type KubeObject, type ResourceType } from '../kube/client.js';
import type { ControllerContext } from './context.js';
import { idOf } from './expectations.js';
import { contains } from './json.js';

export const APPLIED_HASH = 'rlkube.dev/applied-hash';

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
