"""GRPO math on hand-computed examples (the expected numbers are worked out in the comments)."""
import math
import random

import pytest
import torch

from rlkube_trainer import grpo

ln = math.log


def approx(x, rel=1e-5, abs=1e-6):
    return pytest.approx(x, rel=rel, abs=abs)


def test_advantages_are_group_normalised_with_population_std():
    # [1,0,0,1]: mean 0.5, population std 0.5 -> (r - 0.5) / 0.5 = [1,-1,-1,1]
    assert grpo.group_advantages(torch.tensor([1.0, 0, 0, 1])).tolist() == approx([1, -1, -1, 1])
    # [1,2,3,4]: mean 2.5, std sqrt(((1.5^2+0.5^2)*2)/4) = sqrt(1.25) = 1.118034
    # -> [-1.5, -0.5, 0.5, 1.5] / 1.118034 = [-1.341641, -0.447214, 0.447214, 1.341641]
    assert grpo.group_advantages(torch.tensor([1.0, 2, 3, 4])).tolist() == approx([-1.341641, -0.447214, 0.447214, 1.341641])


def test_equal_rewards_give_zero_advantages():
    assert grpo.group_advantages(torch.tensor([0.3, 0.3, 0.3])).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("ratio,adv,loss,clipped,grad", [
    # A>0, r=1.5 > 1+0.28: min(1.5, 1.28) = 1.28 -> loss -1.28, clipped branch, no gradient
    (1.5, 1.0, -1.28, True, 0.0),
    # A>0, r=0.5 < 1-0.2: min(0.5, 0.8) = 0.5 -> loss -0.5, unclipped, d(-r)/dlogp = -r = -0.5
    (0.5, 1.0, -0.5, False, -0.5),
    # A<0, r=0.5: min(-0.5, -0.8) = -0.8 -> loss 0.8, clipped branch, no gradient
    (0.5, -1.0, 0.8, True, 0.0),
    # A<0, r=1.5: min(-1.5, -1.28) = -1.5 -> loss 1.5, unclipped, d(r)/dlogp = 1.5
    (1.5, -1.0, 1.5, False, 1.5),
    # A>0, r=1.2 within [0.8, 1.28]: loss -1.2, gradient -1.2 (ties split the gradient, summing to the same)
    (1.2, 1.0, -1.2, False, -1.2),
])
def test_clipped_token_loss_is_asymmetric(ratio, adv, loss, clipped, grad):
    logp = torch.tensor([ln(ratio) + ln(0.3)], requires_grad=True)
    old = torch.tensor([ln(0.3)])
    out, was_clipped = grpo.clipped_token_loss(logp, old, torch.tensor([adv]), clip_low=0.2, clip_high=0.28)
    assert out.item() == approx(loss)
    assert bool(was_clipped.item()) is clipped
    out.sum().backward()
    assert logp.grad.item() == approx(grad)


def test_k3_kl():
    # logp = ln 0.5, ref = ln 0.25: d = ref - logp = ln 0.5; exp(d) - d - 1 = 0.5 + 0.693147 - 1 = 0.193147
    kl = grpo.k3_kl(torch.tensor([ln(0.5), ln(0.4)]), torch.tensor([ln(0.25), ln(0.4)]))
    assert kl.tolist() == approx([0.193147, 0.0])
    # ref more likely than the policy: d = ln 2: 2 - 0.693147 - 1 = 0.306853
    assert grpo.k3_kl(torch.tensor([ln(0.25)]), torch.tensor([ln(0.5)])).item() == approx(0.306853)


def test_truncated_is_weight_caps_and_detaches():
    old = torch.tensor([ln(0.6), ln(0.3), ln(0.2)], requires_grad=True)
    beh = torch.tensor([ln(0.2), ln(0.6), ln(0.2)])
    w = grpo.truncated_is_weight(old, beh, cap=2.0)
    # 0.6/0.2 = 3 -> capped at 2; 0.3/0.6 = 0.5; equal -> 1
    assert w.tolist() == approx([2.0, 0.5, 1.0])
    assert not w.requires_grad


def _two_completions():
    # completion 0: 3 tokens, advantage +1; completion 1: 1 token, advantage -1 (mask pads it to 3)
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.9, 0.9]])).requires_grad_(True)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    return logp, mask, torch.tensor([1.0, -1.0])


def test_grpo_loss_is_a_token_level_mean():
    logp, mask, adv = _two_completions()
    # ratio 1 everywhere: per-token loss -A -> (-1 -1 -1 +1) / 4 tokens = -0.5
    loss, st = grpo.grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, torch.tensor([False, False]),
                              clip_low=0.2, clip_high=0.28, is_cap=2.0)
    assert loss.item() == approx(-0.5)
    assert st == {"tokens": 4, "kl": 0.0, "clip_frac": 0.0, "is_weight_mean": 1.0}
    loss.backward()
    # d loss / d logp = -A * r / 4 on real tokens, 0 on padding
    assert logp.grad.flatten().tolist() == approx([-0.25, -0.25, -0.25, 0.25, 0.0, 0.0])


def test_grpo_loss_weights_off_policy_completions_by_truncated_is():
    logp, mask, adv = _two_completions()
    beh = logp.detach().clone()
    beh[1, 0] = ln(1.0)  # the worker gave token 0 of completion 1 prob 1.0, the trainer 0.5 -> w = 0.5
    loss, st = grpo.grpo_loss(logp, logp.detach(), beh, adv, mask, torch.tensor([False, True]),
                              clip_low=0.2, clip_high=0.28, is_cap=2.0)
    # (-1 -1 -1 + 0.5 * 1) / 4 = -0.625; mean weight (1+1+1+0.5)/4 = 0.875
    assert loss.item() == approx(-0.625)
    assert st["is_weight_mean"] == approx(0.875)


def test_grpo_loss_adds_k3_kl():
    logp, mask, adv = _two_completions()
    ref = logp.detach() + ln(0.5)  # ref = half the policy's prob on every token: k3 = 0.193147 per token
    loss, st = grpo.grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, torch.tensor([False, False]),
                              clip_low=0.2, clip_high=0.28, is_cap=2.0, kl_coef=0.1, logp_ref=ref)
    assert st["kl"] == approx(0.193147)
    assert loss.item() == approx(-0.5 + 0.1 * 0.193147)


def test_grpo_loss_counts_clipped_tokens():
    logp, mask, adv = _two_completions()
    old = logp.detach().clone()
    old[0, 0] = logp[0, 0].detach() - ln(1.5)  # token (0,0): ratio 1.5 with A=+1 -> clipped
    _, st = grpo.grpo_loss(logp, old, old, adv, mask, torch.tensor([False, False]),
                           clip_low=0.2, clip_high=0.28, is_cap=2.0)
    assert st["clip_frac"] == approx(0.25)


def test_logprob_mismatch_median():
    # |d| = 0, 0.1, 0.5 -> expm1 = 0, 0.105171, 0.648721 -> median 0.105171
    assert grpo.logprob_mismatch([-1, -1, -1], [-1, -1.1, -1.5], [0, 1, 2]) == approx(0.105171)
    # even count: mean of the two middle values: (0 + 0.105171) / 2
    assert grpo.logprob_mismatch([-1, -1], [-1, -0.9], [0, 1]) == approx(0.0525855)
    # only the sampled positions count
    assert grpo.logprob_mismatch([-1, -1, -1], [-1, -1.1, -9], [0, 1]) == approx(0.0525855)


def test_sample_positions():
    assert grpo.sample_positions(5, 32, random.Random(0)) == [0, 1, 2, 3, 4]
    pos = grpo.sample_positions(100, 32, random.Random(0))
    assert len(pos) == 32 and len(set(pos)) == 32 and all(0 <= p < 100 for p in pos)
    assert pos == grpo.sample_positions(100, 32, random.Random(0))
