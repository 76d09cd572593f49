"""Token-budgeted micro-batches: the partition (budget, row cap, order, a row over the budget alone) and a train
step that gives the same update however its rows are cut."""
import random

import pytest
import torch
from helpers import make_batch, trainer

from rlkube_engine.server import Engine
from rlkube_policy.model import TinyPolicy, completion_log_probs, completion_log_probs_chunked, micro_batch_slices


def padded_tokens(lengths, part):
    return (part.stop - part.start) * max(lengths[part])


def test_rows_are_cut_in_order_within_the_budget_and_the_row_cap():
    rng = random.Random(0)
    for _ in range(300):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(0, 40))]
        max_rows, max_tokens = rng.randint(1, 8), rng.randint(60, 200)
        parts = micro_batch_slices(lengths, max_rows, max_tokens)
        # every row once, in order, no empty micro-batch
        assert [i for part in parts for i in range(part.start, part.stop)] == list(range(len(lengths)))
        assert all(part.stop > part.start for part in parts)
        for k, part in enumerate(parts):
            assert part.stop - part.start <= max_rows
            assert padded_tokens(lengths, part) <= max_tokens
            if k + 1 < len(parts):  # greedy: the next row would have broken a bound
                grown = slice(part.start, part.stop + 1)
                assert grown.stop - grown.start > max_rows or padded_tokens(lengths, grown) > max_tokens


def test_the_padded_width_is_the_longest_row_not_the_sum():
    # 3 rows of 10 and one of 40: 4 x 40 = 160 tokens padded, though the rows hold 70
    assert micro_batch_slices([10, 10, 10, 40], 16, 159) == [slice(0, 3), slice(3, 4)]
    assert micro_batch_slices([10, 10, 10, 40], 16, 160) == [slice(0, 4)]
    assert micro_batch_slices([40, 10, 10, 10], 16, 100) == [slice(0, 2), slice(2, 4)]


def test_a_row_longer_than_the_budget_goes_alone():
    assert micro_batch_slices([5, 500, 5, 5], 16, 100) == [slice(0, 1), slice(1, 2), slice(2, 4)]
    assert micro_batch_slices([500], 16, 100) == [slice(0, 1)]


def test_without_a_budget_rows_are_cut_by_count_and_nothing_cuts_nothing():
    assert micro_batch_slices([1000] * 7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert micro_batch_slices([], 3, 10) == []


def test_token_budgeted_log_probs_equal_the_whole_batch():
    p = TinyPolicy(1)
    rng = random.Random(1)
    pairs = [(p.encode_prompt("ab" * rng.randint(1, 4) + "="), [rng.randint(3, 40) for _ in range(rng.randint(0, 12))])
             for _ in range(23)]
    whole, mask = completion_log_probs(p, pairs, 0.9)
    for tokens in (1, 20, 64, 10_000):
        got = completion_log_probs_chunked(p, pairs, 0.9, 16, tokens)
        assert torch.allclose(got[mask], whole.detach()[mask], atol=1e-5), tokens


def train_once(tmp_path, batch, monkeypatch, **kw):
    """One train step; returns its result, the trained weights and the row count of every micro-batch it trained."""
    t = trainer(tmp_path, lr=1e-2, check_seed=7, **kw)
    sizes = []
    accumulate = t._accumulate
    monkeypatch.setattr(t, "_accumulate", lambda rows, *a: sizes.append(len(rows)) or accumulate(rows, *a))
    res = t.train_step(batch)
    return res, {k: v.detach().clone() for k, v in t.policy.policy_state().items()}, sizes


def test_a_step_cut_by_tokens_makes_the_update_of_one_cut_by_count(tmp_path, monkeypatch):
    batch = make_batch(Engine(seed=1), 0)  # 4 groups x 4 completions of uneven lengths: 2 minibatches of 8 rows
    by_count, w_count, count_sizes = train_once(tmp_path / "count", batch, monkeypatch, micro_batch=3)
    by_tokens, w_tokens, token_sizes = train_once(tmp_path / "tokens", batch, monkeypatch, micro_batch=16,
                                                  micro_batch_tokens=24)
    whole, w_whole, whole_sizes = train_once(tmp_path / "whole", batch, monkeypatch, micro_batch=16)
    assert count_sizes == [3, 3, 2, 3, 3, 2] and whole_sizes == [8, 8]
    assert token_sizes != count_sizes and len(token_sizes) > len(whole_sizes) and sum(token_sizes) == 16
    for res in (by_count, by_tokens):
        assert res["rejected"] == [] and res["metrics"]["optimizer_steps"] == 2
        # the gradient's norm (before clipping) and the loss are the minibatch's token mean's, however cut
        assert res["metrics"]["grad_norm"] == pytest.approx(whole["metrics"]["grad_norm"], rel=1e-5)
        assert res["metrics"]["loss"] == pytest.approx(whole["metrics"]["loss"], rel=1e-5, abs=1e-7)
        assert res["metrics"]["tokens"] == whole["metrics"]["tokens"]
    # Adam's first steps move each weight by about lr x sign(gradient): float noise in near-zero gradients shows
    # as up to ~5e-5 here (lr 1e-2); weighting the micro-batches wrongly moves weights by ~1e-2
    for w in (w_count, w_tokens):
        for k, v in w_whole.items():
            assert torch.allclose(w[k], v, atol=1e-4), k
