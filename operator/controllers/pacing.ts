// Status writes paced per object and yielding to a burst of reconciles, and the requeue delays they ask for.
import type { KubeObject, ResourceType } from '../kube/client.js';
import type { BurstGate } from './burst-gate.js';
import type { ControllerContext } from './context.js';
import { idOf } from './expectations.js';
import { canonical, sameJson } from './json.js';

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
