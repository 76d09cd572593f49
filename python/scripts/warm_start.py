"""Warm start for the tiny model on `reverse`: a short supervised run that teaches the output format only.

    cd /work/main && ~/.cache/rlkube/venv/bin/python python/scripts/warm_start.py \\
        --out /tmp/warm-start.safetensors

Teaches: after "s=" emit a string over the task's alphabet whose length is drawn uniformly from
[min-length, max-length] independently of s, then EOS. The characters are drawn independently of s too,
so the warm model knows the alphabet and that outputs are short, but neither the reversal nor even the
rule "as long as s": its expected reverse reward is about 0.2 (below the 0.3 a learn check starts under).
RL from a random init has to discover the 4-symbol alphabet among 45 characters and EOS before it can
learn anything about reversal, and that first phase tends to collapse EOS; this removes that phase.

The output is a policy file (safetensors, like the trainer's policy-v*.safetensors): start the
trainer with --init-weights FILE (its v0 is then this file) and the engine with the same flag, or let
the engine load v0 from the trainer. Prints one JSON line with the path, digest and the measured reward.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

import torch

from rlkube_policy import defaults
from rlkube_policy.model import EOS, TinyPolicy, completion_log_probs, sample
from rlkube_policy.weights import write_policy
from rlkube_trainer import config


def reverse_reward(completion: str, target: str) -> float:
    if not completion:
        return 0.0
    return sum(1 for a, b in zip(completion, target, strict=False) if a == b) / max(len(target), len(completion))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=defaults.SEED, help="model init seed (the trainer's --seed)")
    p.add_argument("--alphabet", default="abcd")
    p.add_argument("--min-length", type=int, default=2)
    p.add_argument("--max-length", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=config.REVERSE_TEMPERATURE, help="for the reward estimate")
    p.add_argument("--n-layer", type=int, default=defaults.N_LAYER)
    p.add_argument("--d-model", type=int, default=defaults.D_MODEL)
    p.add_argument("--n-head", type=int, default=defaults.N_HEAD)
    p.add_argument("--threads", type=int, default=defaults.THREADS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    policy = TinyPolicy(a.seed, n_layer=a.n_layer, d_model=a.d_model, n_head=a.n_head)
    opt = torch.optim.Adam(policy.trainable_parameters(), lr=a.lr)
    rng = random.Random(a.seed + 1000)
    rand = lambda: "".join(rng.choice(a.alphabet) for _ in range(rng.randint(a.min_length, a.max_length)))  # noqa: E731
    loss_v = float("nan")
    for _ in range(a.steps):
        pairs = [(policy.encode_prompt(rand() + "="), policy.tokenizer.encode(rand()) + [EOS]) for _ in range(a.batch)]
        logp, mask = completion_log_probs(policy, pairs, 1.0)
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_v = float(loss)

    # the reward this policy would start RL with, and the output format it learned
    prompts = [rand() for _ in range(64)]
    with torch.no_grad():
        outs = sample(policy, [policy.encode_prompt(s + "=") for s in prompts], 8, config.REVERSE_MAX_TOKENS, a.temperature,
                      torch.Generator().manual_seed(a.seed))
    texts = [policy.decode(o["token_ids"]) for o in outs]
    rewards = [reverse_reward(t, prompts[i // 8][::-1]) for i, t in enumerate(texts)]
    in_alphabet = sum(1 for t in texts if t and set(t) <= set(a.alphabet)) / len(texts)
    digest = write_policy(a.out, policy.policy_state(), policy.kind, 0)
    print(json.dumps({"event": "warm_start", "path": os.path.abspath(a.out), "digest": digest,
                      "loss": round(loss_v, 4), "reward_mean": round(sum(rewards) / len(rewards), 4),
                      "in_alphabet": round(in_alphabet, 3),
                      "mean_length": round(sum(map(len, texts)) / len(texts), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
