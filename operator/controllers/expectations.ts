// Expectations, as client-go's controllers keep them: our writes that the informer cache has not shown yet, by
// the id of the object written.
import type { KubeObject, ResourceType } from '../kube/client.js';
import { realClock, type Clock } from '../../util/clock.js';

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
