// Copied completions: a worker that republishes the completions of a group another worker published (for a task
// of its own) is caught by the group's fingerprint: its multiset of completions (token ids), whatever prompt or
// policy version the copy claims.
//
// An honest worker can draw the very same completions as another one: a confident policy gives the same answer
// to the same prompt again and again (late in the reverse run, nearly every group is 8 times one completion).
// So only a group too unlikely to be drawn twice counts as evidence: one whose probability under its own
// log-probs — the multinomial probability of its multiset of completions — is below COPY_EVIDENCE. A copy of
// a likely group cannot be told from an honest one, and is let through. (The log-probs are the worker's own:
// a copier that also lowers them pays with the trainer's log-prob check.)
import { createHash } from 'node:crypto';
import type { TrajectoryGroup } from './trajectory.js';

/** Below this probability, the same group drawn twice is not chance. */
export const COPY_EVIDENCE = 1e-6;

/** The fingerprint of a group too unlikely to be drawn twice; undefined for a group that could be. */
export function copyFingerprint(group: TrajectoryGroup): string | undefined {
  const counts = new Map<string, number>();
  let logProbability = logFactorial(group.completions.length);
  for (const c of group.completions) {
    const key = createHash('sha256').update(new Uint8Array(c.tokenIds.buffer, c.tokenIds.byteOffset, c.tokenIds.byteLength)).digest('hex');
    counts.set(key, (counts.get(key) ?? 0) + 1);
    for (const lp of c.logprobs) logProbability += lp;
  }
  for (const n of counts.values()) logProbability -= logFactorial(n);
  if (!(logProbability < Math.log(COPY_EVIDENCE))) return undefined;
  return createHash('sha256').update([...counts.keys()].sort().join(',')).digest('hex');
}

/** Fingerprints of the groups seen per policy version, and who published each first. */
export class CopyDetector {
  private readonly firstBy = new Map<string, { workerId: string; version: number }>();

  /**
   * Remembers the group; returns the worker that published the same unlikely group before, when it is another
   * one. Call it in the order the groups were published (the stream's): the first publisher is the original.
   */
  copiedFrom(group: TrajectoryGroup): string | undefined {
    const fingerprint = copyFingerprint(group);
    if (fingerprint === undefined) return undefined;
    const first = this.firstBy.get(fingerprint);
    if (!first) {
      this.firstBy.set(fingerprint, { workerId: group.workerId, version: group.policyVersion });
      return undefined;
    }
    return first.workerId === group.workerId ? undefined : first.workerId;
  }

  /** Forgets the versions older than `oldest` (their groups are stale whatever they copy): bounded memory. */
  forgetBefore(oldest: number): void {
    for (const [fingerprint, first] of this.firstBy) if (first.version < oldest) this.firstBy.delete(fingerprint);
  }

  get size(): number {
    return this.firstBy.size;
  }
}

/** ln(n!) by summation: n is a group size (at most 1024). */
function logFactorial(n: number): number {
  let sum = 0;
  for (let k = 2; k <= n; k++) sum += Math.log(k);
  return sum;
}
