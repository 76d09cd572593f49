// The learner's own checks of an untrusted group before it is trained on: group size, the policy digest
// matches the version claimed, and every reward recomputed with the learner's own verifier.
import type { GroupVerifier, TrajectoryGroup, Verdict } from '../bus/index.js';
import type { EnvironmentClient } from './environment-client.js';

export interface VerifierOptions {
  /** The learner's own environment server: a worker's reward is never trusted. */
  environment: Pick<EnvironmentClient, 'score'>;
  verifierId: string;
  groupSize: number;
  rewardTolerance: number;
  /** The digest the learner published for a version (undefined: unknown or pruned). */
  digestOf: (version: number) => Promise<string | undefined>;
}

export function groupVerifier(options: VerifierOptions): GroupVerifier {
  return async (group: TrajectoryGroup): Promise<Verdict> => {
    if (group.completions.length !== options.groupSize) {
      return { ok: false, reason: 'GroupSizeMismatch', message: `${group.completions.length} completions, expected ${options.groupSize}` };
    }
    if (group.verifierId !== options.verifierId) {
      return { ok: false, reason: 'RewardMismatch', message: `verifier ${group.verifierId}, expected ${options.verifierId}` };
    }
    const digest = await options.digestOf(group.policyVersion);
    if (digest !== group.policyDigest) {
      return { ok: false, reason: 'DigestMismatch', message: `policy v${group.policyVersion} digest ${group.policyDigest}, published ${digest ?? 'none'}` };
    }
    const { rewards } = await options.environment.score(group.taskSeq, group.completions.map((c) => c.text));
    for (const [i, completion] of group.completions.entries()) {
      const reward = rewards[i]!;
      if (!(Math.abs(reward - completion.reward) <= options.rewardTolerance)) {
        return { ok: false, reason: 'RewardMismatch', message: `completion ${i}: claimed reward ${completion.reward}, verifier says ${reward}` };
      }
    }
    return { ok: true };
  };
}
