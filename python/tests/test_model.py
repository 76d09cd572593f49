"""Tokenizer, seeded init, sampling shapes and the sampler/trainer log-prob agreement."""
import pytest
import torch

from rlkube_policy.model import BOS, EOS, PAD, CharTokenizer, TinyPolicy, TokenizerError, build_policy, completion_log_probs, sample
from rlkube_policy.weights import write_policy


def test_tokenizer_ids_and_round_trip():
    tok = CharTokenizer()
    assert tok.vocab_size == 48
    # ' ' is the first char (id 3), '=' the 16th (id 18), 'a' the 20th (id 22), 'z' the last (id 47)
    assert tok.encode(" =az") == [3, 18, 22, 47]
    text = "abc=12+3*4/5-6.7,8? xyz"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_prompt("ab=") == [BOS, 22, 23, 18]
    # decode skips PAD/BOS and stops at EOS
    assert tok.decode([BOS, 22, PAD, 23, EOS, 24]) == "ab"
    with pytest.raises(TokenizerError):
        tok.encode("aB")


def test_seeded_init_is_reproducible_and_seed_dependent(tmp_path):
    digest = lambda seed, name: write_policy(str(tmp_path / name), TinyPolicy(seed).policy_state(), "tiny", 0)  # noqa: E731
    d1 = digest(7, "a")
    torch.manual_seed(123)  # the global RNG must not matter
    d2 = digest(7, "b")
    d3 = digest(8, "c")
    assert d1 == d2 != d3


def test_unknown_model_is_refused():
    with pytest.raises(ValueError):
        build_policy("gpt-5", 1)


def test_sampling_shapes_and_stop_rules():
    p = TinyPolicy(1)
    prompts = [p.encode_prompt("ab="), p.encode_prompt("dcba=")]
    outs = sample(p, prompts, 5, 6, 1.0, torch.Generator().manual_seed(0))
    assert len(outs) == 10 and [o["prompt_index"] for o in outs] == [0] * 5 + [1] * 5
    for o in outs:
        ids, lps = o["token_ids"], o["logprobs"]
        assert 1 <= len(ids) <= 6 and len(lps) == len(ids)
        assert all(t not in (PAD, BOS) for t in ids)
        assert EOS not in ids[:-1]
        assert o["finish_reason"] == ("stop" if ids[-1] == EOS else "length")
        assert o["finish_reason"] == "stop" or len(ids) == 6
        assert all(lp <= 0 for lp in lps)


def test_behavior_logprobs_equal_the_trainers_recomputation():
    # the same temperature-scaled distribution on both sides, whatever the batch shape
    p = TinyPolicy(3)
    prompts = [p.encode_prompt(s) for s in ("ab=", "abcd=", "c=")]
    for temperature in (1.0, 0.7):
        outs = sample(p, prompts, 4, 8, temperature, torch.Generator().manual_seed(1))
        pairs = [(prompts[o["prompt_index"]], o["token_ids"]) for o in outs]
        with torch.no_grad():
            logp, mask = completion_log_probs(p, pairs, temperature)
        for i, o in enumerate(outs):
            assert int(mask[i].sum()) == len(o["token_ids"])
            assert logp[i, : len(o["logprobs"])].tolist() == pytest.approx(o["logprobs"], abs=1e-5)


def test_greedy_is_deterministic():
    p = TinyPolicy(1)
    a = sample(p, [p.encode_prompt("abc=")], 3, 8, 0.0)
    assert a[0]["token_ids"] == a[1]["token_ids"] == a[2]["token_ids"]


def test_context_length_is_enforced():
    p = TinyPolicy(1, max_len=8)
    with pytest.raises(ValueError):
        sample(p, [p.encode_prompt("abcd=")], 1, 8, 1.0)
