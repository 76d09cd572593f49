"""The trainer: v0 agreement with the engine, a step, idempotent retries, resume, rejections, refusals."""
import copy
import hashlib
import os

import pytest
from helpers import PROMPTS, make_batch, tampered, trainer

from rlkube_engine.server import Engine
from rlkube_http import ApiError
from rlkube_policy.model import build_policy


def file_digest(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def test_fresh_trainer_writes_v0_that_the_engine_agrees_with(tmp_path):
    t = trainer(tmp_path)
    st = t.state()
    assert st["step"] == 0 and st["version"] == 0
    assert st["weights_path"] == str(tmp_path / "policy-v0.safetensors")
    assert file_digest(st["weights_path"]) == st["digest"] == Engine(seed=1).info()["digest"]
    assert Engine(seed=2).info()["digest"] != st["digest"]


def test_train_step_writes_the_next_version(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    res = t.train_step(make_batch(e, 0))
    assert res["step"] == 0 and res["version"] == 1 and res["rejected"] == []
    assert res["weights_path"] == str(tmp_path / "policy-v1.safetensors")
    assert file_digest(res["weights_path"]) == res["digest"] != e.info()["digest"]
    m = res["metrics"]
    for key in ("loss", "reward_mean", "reward_std", "kl", "clip_frac", "is_weight_mean", "tokens",
                "logprob_mismatch_median", "grad_norm", "groups_accepted"):
        assert key in m, key
    assert m["tokens"] > 0 and m["groups_accepted"] == 4 and m["optimizer_steps"] == 2
    assert m["logprob_mismatch_median"] < 1e-4 and m["is_weight_mean"] == pytest.approx(1.0)
    assert t.state() == {"step": 1, "version": 1, "weights_path": res["weights_path"], "digest": res["digest"],
                         "rank": 0, "world_size": 1, "vocab_size": t.policy.vocab_size}
    # the engine can load what the trainer wrote
    assert e.load_weights({"path": res["weights_path"], "version": 1, "digest": res["digest"]})["version"] == 1


def test_a_retried_step_returns_the_stored_result_and_does_not_train_twice(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = make_batch(e, 0)
    first = t.train_step(batch)
    again = t.train_step(batch)
    assert again == {**first, "replayed": True}
    assert t.state()["version"] == 1 and not os.path.exists(tmp_path / "policy-v2.safetensors")
    with pytest.raises(ApiError) as err:
        t.train_step({**batch, "step": 5})
    assert err.value.reason == "StepOutOfOrder" and err.value.status == 400


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    e = Engine(seed=1)
    b0 = make_batch(e, 0)
    b1 = make_batch(e, 1)  # version-0 groups used at step 1: one version old, re-weighted by IS
    # reference: two steps in one process (a checkpoint every step: the optimizer's moments resume exactly too)
    ref = trainer(tmp_path / "a", checkpoint_every=1)
    ref.train_step(b0)
    want = ref.train_step(b1)
    # the same two steps with a restart in between (model + optimizer + step come from the checkpoint)
    t = trainer(tmp_path / "b", checkpoint_every=1)
    first = t.train_step(b0)
    del t
    t2 = trainer(tmp_path / "b", checkpoint_every=1)
    assert t2.resumed_from and t2.state()["step"] == 1 and t2.state()["version"] == 1
    assert t2.state()["digest"] == first["digest"]
    assert t2.train_step(b0) == {**first, "replayed": True}  # a retry across the restart
    got = t2.train_step(b1)
    assert got["digest"] == want["digest"] and got["version"] == 2
    assert got["metrics"]["groups_offpolicy"] == 4


def test_resume_skips_a_torn_policy_file(tmp_path):
    e = Engine(seed=1)
    t = trainer(tmp_path)
    t.train_step(make_batch(e, 0))
    (tmp_path / "policy-v1.safetensors").write_bytes(b"torn")
    t2 = trainer(tmp_path)
    assert t2.state()["step"] == 0  # fell back to v0: step 0 will be redone
    assert t2.train_step(make_batch(e, 0))["version"] == 1


def test_checkpoints_every_n_steps_and_resume_takes_the_newest_weights(tmp_path):
    e = Engine(seed=1)
    t = trainer(tmp_path, checkpoint_every=2, keep_checkpoints=1)
    results = [t.train_step(make_batch(e, s)) for s in range(3)]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-s00000002.pt"]
    del t
    t2 = trainer(tmp_path, checkpoint_every=2, keep_checkpoints=1)
    # weights of the newest version (3), optimizer moments of the step-2 checkpoint, the results kept
    assert t2.state()["step"] == 3 and t2.state()["digest"] == results[2]["digest"]
    assert t2.opt.state_dict()["state"] and t2.train_step(make_batch(e, 2))["replayed"]
    assert t2.train_step(make_batch(e, 3))["version"] == 4


def test_a_policy_file_of_another_kind_is_refused_on_resume(tmp_path):
    from rlkube_policy.model import TinyPolicy
    from rlkube_policy.weights import write_policy

    write_policy(str(tmp_path / "policy-v0.safetensors"), TinyPolicy(1).policy_state(), "full", 0)
    with pytest.raises(ValueError, match="holds full weights"):
        trainer(tmp_path)


def test_current_version_groups_with_wrong_logprobs_are_rejected(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = tampered(make_batch(e, 0), 2, -0.5)  # exp(0.5) - 1 = 0.65 > 0.10
    res = t.train_step(batch)
    assert [(r["index"], r["reason"]) for r in res["rejected"]] == [(2, "LogprobMismatch")]
    assert res["rejected"][0]["value"] == pytest.approx(0.648721, abs=1e-3)
    assert res["metrics"]["groups_accepted"] == 3


def test_older_groups_are_checked_against_the_weights_of_their_version_then_reweighted(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    t.train_step(make_batch(e, 0))
    stale = make_batch(e, 1)  # version-0 groups at version 1
    res = t.train_step(tampered(stale, 0, -0.5))
    assert [(r["index"], r["reason"]) for r in res["rejected"]] == [(0, "LogprobMismatch")]
    assert res["metrics"]["groups_offpolicy"] == 3
    assert res["metrics"]["logprob_mismatch_median"] < 1e-4  # the honest ones match v0's weights, not v2's
    assert res["metrics"]["is_weight_mean"] != pytest.approx(1.0)


def test_importance_weights_use_the_trainers_behavior_log_probs_not_the_workers(tmp_path):
    # Lowering the reported log-probs at a few positions passes the median check; it must not change the
    # weights (a worker would otherwise up-weight its own group by up to is-cap).
    e = Engine(seed=1)
    batch = make_batch(e, 1)
    lowered = copy.deepcopy(batch)
    for g in lowered["groups"]:
        g["completions"][0]["logprobs"][0] -= 3.0
    results = []
    for b, d in ((batch, "honest"), (lowered, "lowered")):
        t = trainer(tmp_path / d)
        t.train_step(make_batch(Engine(seed=1), 0))
        results.append(t.train_step(b))
    assert results[1]["rejected"] == []
    assert results[1]["metrics"]["is_weight_mean"] == pytest.approx(results[0]["metrics"]["is_weight_mean"])
    assert results[1]["digest"] == results[0]["digest"]


def test_a_group_whose_version_is_no_longer_kept_is_rejected(tmp_path):
    t, e = trainer(tmp_path, keep_policies=1), Engine(seed=1)
    v1 = t.train_step(make_batch(e, 0))
    e.load_weights({"path": v1["weights_path"], "version": 1, "digest": v1["digest"]})
    of_v1 = make_batch(e, 2)
    t.train_step(make_batch(e, 1))
    res = t.train_step(of_v1)  # version 1 is gone by now (kept: v0 and the newest)
    assert {r["reason"] for r in res["rejected"]} == {"UnknownVersion"}
    assert len(res["rejected"]) == len(PROMPTS)


def test_invalid_groups_are_rejected_not_fatal(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = make_batch(e, 0)
    batch["groups"][0]["policy_version"] = 3
    batch["groups"][1]["completions"][0]["token_ids"][0] = 999
    batch["groups"][2]["completions"][0]["logprobs"][0] = 0.5
    res = t.train_step(batch)
    assert [(r["index"], r["reason"]) for r in res["rejected"]] == [
        (0, "FutureVersion"), (1, "InvalidTokens"), (2, "InvalidLogprobs")]
    assert res["metrics"]["groups_accepted"] == 1 and res["version"] == 1


@pytest.mark.parametrize("mutate,needle", [
    (lambda b: b.pop("groups"), "groups"),
    (lambda b: b.update(groups=[]), "groups"),
    (lambda b: b.update(step="1"), "step"),
    (lambda b: b["groups"][0].pop("prompt_token_ids"), "prompt_token_ids"),
    (lambda b: b["groups"][0]["completions"][0]["logprobs"].append(-1.0), "logprobs"),
    (lambda b: b["groups"][0]["completions"][0].update(reward=float("nan")), "reward"),
    (lambda b: b["groups"][0]["completions"][0].update(token_ids=[1.5]), "token_ids"),
])
def test_malformed_requests_are_refused_with_a_reason(tmp_path, mutate, needle):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = make_batch(e, 0)
    mutate(batch)
    with pytest.raises(ApiError) as err:
        t.train_step(batch)
    assert err.value.status == 400 and err.value.reason == "BadRequest" and needle in err.value.message
    assert t.state()["version"] == 0


def test_kl_to_the_initial_policy(tmp_path):
    t, e = trainer(tmp_path, kl_coef=0.1, minibatches=1), Engine(seed=1)
    r0 = t.train_step(make_batch(e, 0))
    assert r0["metrics"]["kl"] == pytest.approx(0.0, abs=1e-6)  # one minibatch at v0: policy == reference
    e.load_weights({"path": r0["weights_path"], "version": 1, "digest": r0["digest"]})
    assert t.train_step(make_batch(e, 1))["metrics"]["kl"] > 0


def test_init_weights_file_becomes_v0_on_both_sides(tmp_path):
    from rlkube_policy.model import TinyPolicy
    from rlkube_policy.weights import write_policy

    warm = str(tmp_path / "warm.safetensors")  # what scripts/warm_start.py writes
    digest = write_policy(warm, TinyPolicy(5).policy_state(), "tiny", 0)
    t = trainer(tmp_path / "ck", init_weights=warm)
    e = Engine(seed=1, init_weights=warm)
    assert t.state()["digest"] == e.info()["digest"] == digest != Engine(seed=1).info()["digest"]


def test_a_temperature_other_than_the_trainers_shows_as_mismatch(tmp_path):
    # behavior log-probs sampled at T=0.2 are not those of the trainer's T: the check sees it
    t, e = trainer(tmp_path, temperature=1.0), Engine(seed=1)
    out = e.complete({"prompt": "abc=", "n": 8, "max_tokens": 8, "temperature": 0.2, "logprobs": 0,
                      "return_token_ids": True})
    group = {"policy_version": 0, "prompt_token_ids": out["choices"][0]["prompt_token_ids"],
             "completions": [{"token_ids": c["token_ids"], "logprobs": c["logprobs"]["token_logprobs"],
                              "reward": float(i)} for i, c in enumerate(out["choices"])]}
    res = t.train_step({"step": 0, "groups": [group]})
    assert [r["reason"] for r in res["rejected"]] == ["LogprobMismatch"]


def with_texts(batch, prompts=PROMPTS):
    """The batch as the learner agent posts it: each group's task prompt and each completion's text."""
    b = copy.deepcopy(batch)
    policy = build_policy("tiny", seed=1)
    for g, prompt in zip(b["groups"], prompts, strict=True):
        g["prompt"] = prompt
        for c in g["completions"]:
            c["text"] = policy.decode(c["token_ids"])
    return b


def test_texts_and_prompts_that_match_the_tokens_are_trained_on(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    res = t.train_step(with_texts(make_batch(e, 0)))
    assert res["rejected"] == [] and res["metrics"]["groups_accepted"] == 4


def test_a_completion_text_that_is_not_its_tokens_is_rejected(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = with_texts(make_batch(e, 0))
    batch["groups"][1]["completions"][3]["text"] = "dcba"  # the rewarded answer, claimed for other tokens
    res = t.train_step(batch)
    assert [(r["index"], r["reason"]) for r in res["rejected"]] == [(1, "TextMismatch")]
    assert "completions[3]" in res["rejected"][0]["value"]
    assert res["metrics"]["groups_accepted"] == 3


def test_a_group_whose_prompt_tokens_are_not_the_tasks_prompt_is_rejected(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = with_texts(make_batch(e, 0))
    batch["groups"][0]["prompt"] = "dd="  # a group generated for another task's prompt
    batch["groups"][2]["prompt"] = "AB="  # not even in the vocabulary
    res = t.train_step(batch)
    assert [(r["index"], r["reason"]) for r in res["rejected"]] == [(0, "PromptMismatch"), (2, "PromptMismatch")]


def test_a_text_that_is_not_a_string_is_a_bad_request(tmp_path):
    t, e = trainer(tmp_path), Engine(seed=1)
    batch = with_texts(make_batch(e, 0))
    batch["groups"][0]["completions"][0]["text"] = 7
    with pytest.raises(ApiError) as err:
        t.train_step(batch)
    assert err.value.reason == "BadRequest" and "groups[0].completions[0].text" in str(err.value)
