"""The GPU check (`npm run bench -- gpu`): a 0.5B-class Qwen2 config with random weights in bf16 — the trainer's
train_step (tokens/s, peak GPU memory) and the hf engine's generation (tokens/s); with two GPUs or more, the
trainer's collectives on a real two-rank NCCL group (CPU-held tensors reduced and broadcast through Dist, which
CPU tests can only stand in for). No GPU: says so, no figures.

    ~/.cache/rlkube/venv/bin/python python/scripts/gpu_check.py

Prints progress lines and, last, one JSON line. Sized to stay well under 8 minutes on one H100/H200.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp

from rlkube_policy.model import completion_log_probs_chunked, sample
from rlkube_trainer.distributed import init_from_env
from rlkube_trainer.trainer import Trainer, TrainerConfig

# Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads, 151936 vocabulary), random weights.
QWEN_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)


def make_model(out: str) -> None:
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(Qwen2Config(**QWEN_0_5B, bos_token_id=1, eos_token_id=2, pad_token_id=0)).save_pretrained(out)
    vocab = {f"t{i}": i for i in range(QWEN_0_5B["vocab_size"])}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token="t3")),
                                  pad_token="t0", bos_token="t1", eos_token="t2")
    tok.save_pretrained(out)


def nccl_rank(local_rank: int, port: int, results) -> None:
    """One of two NCCL ranks: a CPU tensor summed and an object broadcast through Dist, as the trainer does."""
    d = init_from_env({"WORLD_SIZE": "1", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                      local_rank=local_rank, nproc_per_node=2)
    summed = d.sum_(torch.full((4,), float(local_rank + 1)))  # a CPU tensor, like the log-prob buffer
    results[local_rank] = (summed.device.type, summed.tolist(), d.broadcast({"from": local_rank}))
    torch.distributed.destroy_process_group()


def nccl_collectives() -> bool | str:
    """True when two NCCL ranks sum a CPU tensor to 1+2 and agree on rank 0's broadcast; a reason otherwise."""
    if torch.cuda.device_count() < 2:
        return "needs 2 GPUs"
    results = mp.Manager().dict()
    mp.spawn(nccl_rank, args=(29517, results), nprocs=2, join=True)
    return all(results[r] == ("cpu", [3.0] * 4, {"from": 0}) for r in (0, 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--completion-len", type=int, default=512)
    p.add_argument("--lora-rank", type=int, default=0)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu: no CUDA device on this machine; nothing measured", flush=True)
        print(json.dumps({"gpu": False}), flush=True)
        return 0
    name = torch.cuda.get_device_name(0)
    collectives = nccl_collectives()
    print(f"gpu: two-rank NCCL collectives through Dist: {collectives}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        model_dir = os.path.join(d, "qwen-0.5b-random")
        make_model(model_dir)
        print(f"gpu: {name}; random {QWEN_0_5B['num_hidden_layers']}-layer Qwen2 config in {model_dir}", flush=True)
        t = Trainer(TrainerConfig(checkpoint_dir=os.path.join(d, "ck"), model="hf:" + model_dir, seed=1, lr=1e-6,
                                  minibatches=2, lora_rank=a.lora_rank, lora_alpha=2 * a.lora_rank, check_seed=0))
        g = torch.Generator().manual_seed(0)
        rand = lambda n: torch.randint(3, QWEN_0_5B["vocab_size"], (n,), generator=g).tolist()  # noqa: E731
        groups = [{"policy_version": 0, "prompt_token_ids": rand(a.prompt_len),
                   "completions": [{"token_ids": rand(a.completion_len), "reward": float(i % 2)} for i in range(a.group_size)]}
                  for _ in range(a.groups)]
        # behavior log-probs = the trainer's own at v0, so the groups pass its check
        pairs = [(g_["prompt_token_ids"], c["token_ids"]) for g_ in groups for c in g_["completions"]]
        lp = completion_log_probs_chunked(t.policy, pairs, t.cfg.temperature, t.cfg.micro_batch, t.cfg.micro_batch_tokens)
        for g_, rows in zip(groups, lp.split(a.group_size), strict=True):
            for c, row in zip(g_["completions"], rows, strict=True):
                c["logprobs"] = row[: len(c["token_ids"])].tolist()
        t.train_step({"step": 0, "groups": groups})  # warm-up (kernels, allocator)
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.time()
        res = t.train_step({"step": 1, "groups": groups})  # the same groups, one version old: IS-weighted
        torch.cuda.synchronize()
        train_s = time.time() - t0
        tokens = res["metrics"]["tokens"]
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
        print(f"gpu: train_step {tokens} tokens in {train_s:.2f} s, "
              f"accepted {res['metrics']['groups_accepted']}/{len(groups)}, peak {peak_gib:.1f} GiB", flush=True)
        prompts = [rand(a.prompt_len) for _ in range(8)]
        torch.cuda.synchronize()
        t0 = time.time()
        outs = sample(t.policy, prompts, a.group_size, 256, 1.0, torch.Generator().manual_seed(0))
        torch.cuda.synchronize()
        gen_s = time.time() - t0
        gen_tokens = sum(len(o["token_ids"]) for o in outs)
        print(f"gpu: hf engine generated {gen_tokens} tokens in {gen_s:.2f} s", flush=True)
    print(json.dumps({"gpu": name, "train_tokens_per_s": round(tokens / train_s, 1), "train_peak_gib": round(peak_gib, 2),
                      "generate_tokens_per_s": round(gen_tokens / gen_s, 1), "groups_accepted": res["metrics"]["groups_accepted"],
                      "nccl_collectives": collectives}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
