"""Learnability check: GRPO on the `reverse` task through the engine and trainer code (no HTTP, no bus).

    cd /work/main && ~/.cache/rlkube/venv/bin/python python/scripts/learn_check.py --seed 1
    # a Hugging Face model (e.g. the tiny one: python -m rlkube_policy.tiny_hf --out /tmp/tiny-qwen2):
    ... learn_check.py --model hf:/tmp/tiny-qwen2 --lora-rank 8

Each step: B prompts s+"=" (s random over the alphabet, length 2..4), G samples each from the policy
server's Engine.complete (the same request the agent sends), rewards, one Trainer.train_step (the same
body the learner agent posts), then the engine loads the new version by path + digest. Prints one JSON
line per step and a summary; exits 1 unless the first step's reward is below 0.3 and the 5-step moving
average of the reward reaches --target within --steps (a check, not a benchmark: time is only printed).
--lag K makes the engine lag K versions behind (async mode: off-policy groups, truncated IS).
examples/reverse-cpu.yaml trains with --kl-coef 0.05 (the trainer's default is 0; see config.TrainerConfig.kl_coef);
the trainer's flags are rlkube_trainer.config's, with the tiny reverse task's temperature and max tokens.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time

import torch

from rlkube_engine.server import Engine
from rlkube_policy import defaults
from rlkube_trainer import config
from rlkube_trainer.trainer import Trainer


def reverse_reward(completion: str, target: str) -> float:
    """Positions where completion[i] == target[i], over max(len(target), len(completion)); 0 when empty."""
    if not completion:
        return 0.0
    hits = sum(1 for a, b in zip(completion, target, strict=False) if a == b)
    return hits / max(len(target), len(completion))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the trainer's flags (rlkube_trainer.config), at the values the tiny reverse task was tuned with
    config.add_arguments(p, skip=("checkpoint_dir", "keep_policies"),
                         overrides={"temperature": config.REVERSE_TEMPERATURE})
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--alphabet", default="abcd")
    p.add_argument("--min-length", type=int, default=2)
    p.add_argument("--max-length", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=config.REVERSE_MAX_TOKENS)
    p.add_argument("--lag", type=int, default=0, help="engine runs this many versions behind the trainer")
    p.add_argument("--target", type=float, default=0.8)
    p.add_argument("--checkpoint-dir", default=None, help="kept afterwards; default: a temporary directory, removed")
    p.add_argument("--threads", type=int, default=defaults.THREADS)
    p.add_argument("--quiet", action="store_true", help="only every 10th step and the summary")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    ckdir = a.checkpoint_dir or tempfile.mkdtemp(prefix="learn-check-")
    trainer = Trainer(config.from_args(a, checkpoint_dir=ckdir, keep_policies=a.lag + 2))
    engine = Engine(a.model, seed=a.seed, n_layer=a.n_layer, d_model=a.d_model, n_head=a.n_head, lora_rank=a.lora_rank,
                    lora_alpha=a.lora_alpha, init_weights=a.init_weights)
    st = trainer.state()
    assert engine.info()["digest"] == st["digest"], "engine v0 and trainer v0 disagree"
    rng = random.Random(a.seed)
    history, reached, reached_ma, t_start = [], None, None, time.time()
    published = [st]  # policy records by version
    for step in range(a.steps):
        t0 = time.time()
        groups, rewards, bodies, targets = [], [], [], []
        for _ in range(a.batch_size):
            s = "".join(rng.choice(a.alphabet) for _ in range(rng.randint(a.min_length, a.max_length)))
            targets.append(s[::-1])
            bodies.append({"model": a.model, "prompt": s + "=", "n": a.group_size, "max_tokens": a.max_tokens,
                           "temperature": a.temperature, "logprobs": 0, "return_token_ids": True})
        # one batched sampling run for the B requests (what the engine does with concurrent requests)
        for out, target in zip(engine.complete_many(bodies), targets, strict=True):
            comps = []
            for c in out["choices"]:
                r = reverse_reward(c["text"], target)
                rewards.append(r)
                comps.append({"token_ids": c["token_ids"], "logprobs": c["logprobs"]["token_logprobs"], "reward": r})
            groups.append({"policy_version": out["policy"]["version"],
                           "prompt_token_ids": out["choices"][0]["prompt_token_ids"], "completions": comps})
        t_sample = time.time() - t0
        res = trainer.train_step({"step": step, "groups": groups})
        published.append(res)
        load = published[max(0, res["version"] - a.lag)]
        engine.load_weights({"path": load["weights_path"], "version": max(0, res["version"] - a.lag), "digest": load["digest"]})
        m = res["metrics"]
        reward = sum(rewards) / len(rewards)
        history.append(reward)
        if reached is None and reward >= a.target:
            reached = step
        ma = sum(history[-5:]) / len(history[-5:])
        if reached_ma is None and len(history) >= 5 and ma >= a.target:
            reached_ma = step
        line = {"step": step, "reward": round(reward, 4), "len": round(m["completion_len_mean"], 2),
                "loss": round(m["loss"], 4), "is_w": round(m["is_weight_mean"], 3),
                "mismatch": round(m["logprob_mismatch_median"], 6), "rejected": len(res["rejected"]),
                "sample_s": round(t_sample, 3), "train_s": round(m["step_seconds"], 3)}
        if not a.quiet or step % 10 == 0 or step == a.steps - 1:
            print(json.dumps(line), flush=True)
    elapsed = time.time() - t_start
    at = {k: round(history[k], 3) for k in sorted({0, 25, 50, 100, 150, len(history) - 1}) if k < len(history)}
    avg = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    summary = {"event": "summary", "seed": a.seed, "reward_at": at, "first_step_at_target": reached,
               "first_step_5avg_at_target": reached_ma,
               "final_10_mean": round(avg(history[-10:]), 3), "seconds": round(elapsed, 1),
               "seconds_per_step": round(elapsed / max(1, len(history)), 3),
               "checkpoint_dir": a.checkpoint_dir}
    print(json.dumps(summary), flush=True)
    if a.checkpoint_dir is None:
        shutil.rmtree(ckdir, ignore_errors=True)
    ok = history[0] < 0.3 and reached_ma is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
