// Informers: client-node's ListWatch (list, then watch from that resourceVersion) per watched namespace,
// restarted with back-off after errors, with a `synced` promise for readiness. Cached objects leave out
// metadata.managedFields (the operator never reads them; they are a large part of an applied object), and
// whatever else a `slim` function drops.
import { makeInformer, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { resourcePath, type KubeClient, type KubeObject, type ResourceType } from './client.js';

type Handler<T> = (obj: T) => void;
type ListWatch<T extends KubernetesObject> = ReturnType<typeof makeInformer<T>>;

export class Informer<T extends KubeObject> {
  private readonly watches: Array<{ namespace: string | undefined; lw: ListWatch<T & KubernetesObject> }> = [];
  private readonly handlers: Handler<T>[] = [];
  private readonly deleteHandlers: Handler<T>[] = [];
  private stopped = false;
  /** Consecutive failed starts of each ListWatch (one per watched namespace). */
  private readonly failures = new Map<ListWatch<T & KubernetesObject>, number>();
  private syncedCount = 0;
  private resolveSynced!: () => void;
  /** Resolves once every namespace has been listed. */
  readonly synced = new Promise<void>((resolve) => { this.resolveSynced = resolve; });

  constructor(
    kc: KubeConfig,
    client: KubeClient,
    readonly type: ResourceType,
    /** [] → all namespaces */
    namespaces: string[],
    private readonly log: Logger,
    labelSelector?: string,
    /** Drops, in place, what the operator does not read of a cached object (before any handler sees it). */
    private readonly slim?: (obj: T) => void,
  ) {
    const scopes = namespaces.length === 0 ? [undefined] : namespaces;
    for (const namespace of scopes) {
      let listed = false;
      const list = async () => {
        const result = await client.list<T>(type, namespace, labelSelector);
        if (!listed) {
          listed = true;
          // the ListWatch adds the items right after this resolves; report synced after that
          setImmediate(() => { if (++this.syncedCount === scopes.length) this.resolveSynced(); });
        }
        return result as never;
      };
      const lw = makeInformer<T & KubernetesObject>(kc, resourcePath(type, namespace), list, labelSelector);
      for (const verb of ['add', 'update', 'delete'] as const) lw.on(verb, (obj) => this.emit(obj as T, verb === 'delete'));
      lw.on('error', (err) => this.restart(lw, err));
      lw.on('connect', () => this.failures.delete(lw)); // a watch that connects resets its back-off
      this.watches.push({ namespace, lw });
    }
  }

  private emit(obj: T, deleted: boolean): void {
    // The ListWatch has stored this very object: trimming it here trims the cache.
    if (obj.metadata && 'managedFields' in obj.metadata) (obj.metadata as { managedFields?: unknown }).managedFields = undefined;
    this.slim?.(obj);
    for (const h of this.handlers) h(obj);
    if (deleted) for (const h of this.deleteHandlers) h(obj);
  }

  private restart(lw: ListWatch<T & KubernetesObject>, err: unknown): void {
    if (this.stopped) return;
    // Back-off doubling from 1 s to 30 s: an API server that keeps refusing is not hammered.
    const failures = (this.failures.get(lw) ?? 0) + 1;
    this.failures.set(lw, failures);
    const delayMs = Math.min(1000 * 2 ** (failures - 1), 30_000);
    this.log.warn({ kind: this.type.kind, err: String(err), retryInMs: delayMs }, 'watch failed; restarting');
    setTimeout(() => { if (!this.stopped) lw.start().catch((e) => this.restart(lw, e)); }, delayMs).unref();
  }

  /** Called for every add, update and delete (a reconcile reads the cache, never the event). */
  onChange(handler: Handler<T>): void { this.handlers.push(handler); }
  /** Called when an object leaves the cache (after the onChange handlers): per-object state goes with it. */
  onDelete(handler: Handler<T>): void { this.deleteHandlers.push(handler); }

  async start(): Promise<void> {
    this.stopped = false;
    await Promise.all(this.watches.map(({ lw }) => lw.start().catch((err) => this.restart(lw, err))));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.watches.map(({ lw }) => lw.stop()));
  }

  get(namespace: string, name: string): T | undefined {
    for (const { namespace: ns, lw } of this.watches) {
      if (ns === undefined || ns === namespace) {
        const obj = lw.get(name, namespace);
        if (obj) return obj as T;
      }
    }
    return undefined;
  }

  list(namespace?: string): T[] {
    return this.watches.flatMap(({ lw }) => lw.list(namespace) as T[]);
  }
}
