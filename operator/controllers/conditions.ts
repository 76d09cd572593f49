// Standard conditions (type, status, CamelCase reason, message, observedGeneration, lastTransitionTime).
import type { Condition } from '../../api/index.js';

export type ConditionStatus = 'True' | 'False' | 'Unknown';
export interface DesiredCondition { type: string; status: ConditionStatus; reason: string; message?: string }

/**
 * The conditions to write: exactly `desired`, in its order; lastTransitionTime moves only when a condition's
 * status changes, so an unchanged summary yields an identical list (and no status write).
 */
export function mergeConditions(existing: Condition[] | undefined, desired: DesiredCondition[], generation: number | undefined, now: Date): Condition[] {
  return desired.map((d) => {
    const before = existing?.find((c) => c.type === d.type);
    return {
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: d.message ?? '',
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      lastTransitionTime: before && before.status === d.status ? before.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
  });
}

export const findCondition = (conditions: Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);
export const isTrue = (conditions: Condition[] | undefined, type: string) => findCondition(conditions, type)?.status === 'True';

/** Conditions whose status differs from before (what deserves an Event). */
export function transitions(before: Condition[] | undefined, after: Condition[]): Condition[] {
  return after.filter((c) => findCondition(before, c.type)?.status !== c.status);
}
