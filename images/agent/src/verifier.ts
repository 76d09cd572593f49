// The learner's own checks of an untrusted group before it is trained on: group size, the policy digest
// matches the version claimed, and every reward recomputed with the learner's own verifier.
import type { GroupVerifier, TrajectoryGroup, Verdict } from '../../../bus/index.js';
import type { Environment } from './environments/index.js';

export interface VerifierOptions {
  environment: Environment;
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
    if (group.verifierId !== options.environment.verifierId) {
      return { ok: false, reason: 'RewardMismatch', message: `verifier ${group.verifierId}, expected ${options.environment.verifierId}` };
    }
    const digest = await options.digestOf(group.policyVersion);
    if (digest !== group.policyDigest) {
      return { ok: false, reason: 'DigestMismatch', message: `policy v${group.policyVersion} digest ${group.policyDigest}, published ${digest ?? 'none'}` };
    }
    const item = options.environment.item(group.taskSeq);
    for (const [i, completion] of group.completions.entries()) {
      const reward = options.environment.score(item, completion.text);
      if (!(Math.abs(reward - completion.reward) <= options.rewardTolerance)) {
        return { ok: false, reason: 'RewardMismatch', message: `completion ${i}: claimed reward ${completion.reward}, verifier says ${reward}` };
      }
    }
    return { ok: true };
  };
}
