"""Peak memory of the trainer's log-prob pass at one batch size (`npm run bench -- learn-hf` runs it at 16 and
256 in fresh processes and divides): completion_log_probs_chunked over `--batch` completions of a
Qwen2-style model with a 32k vocabulary (random init, made in memory), --micro-batch completions per forward.

    ~/.cache/rlkube/venv/bin/python python/scripts/logprob_memory.py --batch 256

Prints one JSON line: the process's peak RSS growth during the pass over its RSS before it (Linux: VmHWM
reset through /proc/self/clear_refs), in MiB. Without micro-batches the pass would hold every completion's
full-vocabulary logits at once (batch x length x vocab x 4 bytes).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from rlkube_policy.model import HFPolicy, completion_log_probs_chunked
from rlkube_trainer import config


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class RandomQwen(HFPolicy):
    """An HFPolicy over a random-init model built in memory (no folder, no tokenizer)."""

    def __init__(self, vocab: int, hidden: int, layers: int):
        from transformers import AutoModelForCausalLM, Qwen2Config

        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
        self.module = AutoModelForCausalLM.from_config(cfg).eval()
        self.device = torch.device("cpu")
        self.pad_id, self.eos_id, self.banned_ids, self.vocab_size, self.max_len = 0, 1, [], vocab, 512


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--micro-batch", type=int, default=config.TrainerConfig.micro_batch)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--completion-len", type=int, default=96)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    policy = RandomQwen(a.vocab, a.hidden, a.layers)
    g = torch.Generator().manual_seed(1)
    pair = lambda: (torch.randint(2, a.vocab, (a.prompt_len,), generator=g).tolist(),  # noqa: E731
                    torch.randint(2, a.vocab, (a.completion_len,), generator=g).tolist())
    completion_log_probs_chunked(policy, [pair()], 1.0, a.micro_batch)  # warm-up: kernels, allocator arenas
    pairs = [pair() for _ in range(a.batch)]
    before = rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    lp = completion_log_probs_chunked(policy, pairs, 1.0, a.micro_batch)
    peak = rss_kib("VmHWM")
    print(json.dumps({"batch": a.batch, "micro_batch": a.micro_batch, "tokens": int(lp.numel()),
                      "peak_growth_mib": round((peak - before) / 1024, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
