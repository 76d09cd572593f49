// Reading pods and workloads for status: readiness counts and "why can't these pods be scheduled".
import type { V1Pod } from '@kubernetes/client-node';

export interface SchedulingProblem { reason: 'InsufficientGPU' | 'Unschedulable'; message: string; pods: number }

/** Pods the scheduler reported as Unschedulable (PodScheduled=False); GPU shortage gets its own reason. */
export function schedulingProblem(pods: readonly V1Pod[]): SchedulingProblem | undefined {
  const stuck = pods.filter((p) => !p.metadata?.deletionTimestamp && !p.spec?.nodeName &&
    p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable'));
  if (stuck.length === 0) return undefined;
  const message = stuck[0]!.status!.conditions!.find((c) => c.type === 'PodScheduled')!.message ?? '';
  const reason = /nvidia\.com\/gpu/.test(message) ? 'InsufficientGPU' : 'Unschedulable';
  return { reason, message: `${stuck.length}/${pods.length} pods cannot be scheduled: ${message}`, pods: stuck.length };
}

export const isPodReady = (pod: V1Pod) =>
  !pod.metadata?.deletionTimestamp && pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
