// The learner's own checks of an untrusted group, after the bus's (bus/judge.ts), before it is trained on: group
// size, the grader named, the policy digest of the version claimed, and every reward re-scored by the learner's
// own environment.
import type { GroupCheck, TrajectoryGroup, Verdict } from '../bus/index.js';
import type { EnvironmentClient } from './environment-client.js';

export interface GroupCheckOptions {
  /** The learner's own environment server: a worker's reward is never trusted. */
  environment: Pick<EnvironmentClient, 'score'>;
  graderId: string;
  groupSize: number;
  rewardTolerance: number;
  /** The digest the learner published for a version (undefined: unknown or pruned). */
  digestOf: (version: number) => Promise<string | undefined>;
}

export function groupCheck(options: GroupCheckOptions): GroupCheck {
  return async (group: TrajectoryGroup): Promise<Verdict> => {
    if (group.completions.length !== options.groupSize) {
      return { ok: false, reason: 'GroupSizeMismatch', message: `${group.completions.length} completions, expected ${options.groupSize}` };
    }
    if (group.graderId !== options.graderId) {
      return { ok: false, reason: 'RewardMismatch', message: `grader ${group.graderId}, expected ${options.graderId}` };
    }
    const digest = await options.digestOf(group.policyVersion);
    if (digest !== group.policyDigest) {
      return { ok: false, reason: 'DigestMismatch', message: `policy v${group.policyVersion} digest ${group.policyDigest}, published ${digest ?? 'none'}` };
    }
    const { rewards } = await options.environment.score(group.taskSeq, group.completions.map((c) => c.text));
    for (const [i, completion] of group.completions.entries()) {
      const reward = rewards[i]!;
      if (!(Math.abs(reward - completion.reward) <= options.rewardTolerance)) {
        return { ok: false, reason: 'RewardMismatch', message: `completion ${i}: claimed reward ${completion.reward}, the grader says ${reward}` };
      }
    }
    return { ok: true };
  };
}
