"""The trainer's HTTP server (learner pods): GET /health, GET /v1/state, POST /v1/train_step.

With several learner ranks (WORLD_SIZE nodes x --nproc-per-node processes), this process is the node's local
rank 0 and starts the others; global rank 0 serves train_step, every other rank follows it (distributed.py)
and answers /health and /v1/state only, so the learner agent beside it knows not to drive the job."""
from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.multiprocessing as mp

from rlkube_policy import defaults

from . import config
from .distributed import device_for, init_from_env
from rlkube_http import announce_ready, make_server, serve_in_thread
from .trainer import Trainer, TrainerConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rlkube_trainer.server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="0 picks a free port (see the ready line)")
    p.add_argument("--model", default=defaults.MODEL, help="'tiny' or 'hf:<name-or-path>'")
    p.add_argument("--checkpoint-dir", required=True)
    p.add_argument("--lr", type=float, default=config.LR)
    p.add_argument("--temperature", type=float, default=config.TEMPERATURE,
                   help="the job's sampling temperature: log-probs are those of logits/temperature")
    p.add_argument("--clip-low", type=float, default=config.CLIP_LOW)
    p.add_argument("--clip-high", type=float, default=config.CLIP_HIGH)
    p.add_argument("--kl-coef", type=float, default=config.KL_COEF)
    p.add_argument("--is-cap", type=float, default=config.IS_CAP)
    p.add_argument("--max-grad-norm", type=float, default=config.MAX_GRAD_NORM)
    p.add_argument("--minibatches", type=int, default=config.MINIBATCHES,
                   help="optimizer steps per train_step: the batch's groups split into this many minibatches")
    p.add_argument("--micro-batch", type=int, default=config.MICRO_BATCH,
                   help="completions per forward/backward: peak memory does not grow with the batch")
    p.add_argument("--checkpoint-every", type=int, default=1, help="steps between optimizer checkpoints")
    p.add_argument("--nproc-per-node", type=int, default=1,
                   help="trainer processes on this node (one per GPU); WORLD_SIZE/NODE_RANK/MASTER_ADDR/MASTER_PORT "
                        "from the environment give the nodes")
    p.add_argument("--adam-beta2", type=float, default=config.ADAM_BETA2)
    p.add_argument("--skip-uniform-groups", action=argparse.BooleanOptionalAction, default=config.SKIP_UNIFORM_GROUPS,
                   help="leave groups whose rewards are all equal out of the token mean")
    p.add_argument("--check-seed", type=int, default=None,
                   help="seed of the logprob-check positions (default: a per-process secret)")
    p.add_argument("--logprob-tolerance", type=float, default=config.LOGPROB_TOLERANCE)
    p.add_argument("--sampled-positions", type=int, default=config.SAMPLED_POSITIONS)
    p.add_argument("--seed", type=int, default=defaults.SEED)
    p.add_argument("--n-layer", type=int, default=defaults.N_LAYER)
    p.add_argument("--d-model", type=int, default=defaults.D_MODEL)
    p.add_argument("--n-head", type=int, default=defaults.N_HEAD)
    p.add_argument("--max-len", type=int, default=defaults.MAX_LEN)
    p.add_argument("--lora-rank", type=int, default=0, help="HF models: LoRA rank (0 = full fine-tuning)")
    p.add_argument("--lora-alpha", type=int, default=0)
    p.add_argument("--init-weights", default=None, help="a policy file to start from (warm start) instead of the seeded init")
    p.add_argument("--keep-policies", type=int, default=config.KEEP_POLICIES, help="0 keeps every policy file")
    p.add_argument("--keep-checkpoints", type=int, default=config.KEEP_CHECKPOINTS)
    p.add_argument("--threads", type=int, default=defaults.THREADS, help="torch CPU threads")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    return p.parse_args(argv)


def build_trainer(a: argparse.Namespace, dist=None, device=None) -> Trainer:
    return Trainer(TrainerConfig(
        checkpoint_dir=a.checkpoint_dir, model=a.model, lr=a.lr, temperature=a.temperature, clip_low=a.clip_low,
        clip_high=a.clip_high, kl_coef=a.kl_coef, is_cap=a.is_cap, max_grad_norm=a.max_grad_norm, minibatches=a.minibatches, adam_beta2=a.adam_beta2,
        skip_uniform_groups=a.skip_uniform_groups, check_seed=a.check_seed,
        logprob_tolerance=a.logprob_tolerance, sampled_positions=a.sampled_positions, seed=a.seed,
        n_layer=a.n_layer, d_model=a.d_model, n_head=a.n_head, max_len=a.max_len, lora_rank=a.lora_rank,
        lora_alpha=a.lora_alpha, init_weights=a.init_weights, keep_policies=a.keep_policies,
        keep_checkpoints=a.keep_checkpoints, micro_batch=a.micro_batch, checkpoint_every=a.checkpoint_every,
        device=device), dist)


def make_trainer_server(trainer: Trainer, host: str, port: int, verbose: bool = False):
    return make_server(host, port, {
        ("GET", "/health"): lambda _: {"ok": True},
        ("GET", "/v1/state"): lambda _: trainer.state(),
        ("POST", "/v1/train_step"): trainer.train_step,
    }, verbose=verbose)


def _follower(index: int, a: argparse.Namespace) -> None:
    """Local rank index + 1 of this node (a child process): follows global rank 0's steps."""
    local_rank = index + 1
    torch.set_num_threads(a.threads)
    dist = init_from_env(local_rank=local_rank, nproc_per_node=a.nproc_per_node)
    build_trainer(a, dist, device_for(local_rank)).follow()


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.nproc_per_node > 1:  # local ranks 1.. as child processes (they die with this one: daemonic)
        mp.start_processes(_follower, args=(a,), nprocs=a.nproc_per_node - 1, join=False, daemon=True,
                           start_method="spawn")
    try:
        dist = init_from_env(local_rank=0, nproc_per_node=a.nproc_per_node)
        trainer = build_trainer(a, dist, device_for(0))
    except (ValueError, OSError, RuntimeError) as e:  # bad flags, unreadable dir, checkpoint of another shape
        print(f"trainer: {e}", file=sys.stderr)
        return 2
    server = make_trainer_server(trainer, a.host, a.port, a.verbose)
    st = trainer.state()
    announce_ready(role="trainer", port=server.server_address[1], model=a.model, step=st["step"],
                   version=st["version"], digest=st["digest"], weights_path=st["weights_path"],
                   resumed_from=trainer.resumed_from, rank=dist.rank, world_size=dist.world)
    try:
        if dist.rank == 0:
            server.serve_forever()
        else:
            serve_in_thread(server)
            trainer.follow()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
