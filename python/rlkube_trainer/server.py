"""The trainer's HTTP server (learner pods): GET /health, GET /v1/state, POST /v1/train_step.

With several learner ranks (WORLD_SIZE nodes x --nproc-per-node processes), this process is the node's local
rank 0 and starts the others; global rank 0 serves train_step, every other rank follows it (distributed.py)
and answers /health and /v1/state only, so the learner agent beside it knows not to drive the job."""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch
import torch.multiprocessing as mp

from rlkube_http import announce_ready, make_server, serve_in_thread
from rlkube_policy import defaults

from . import config
from .distributed import device_for, init_from_env
from .trainer import Trainer, TrainerConfig


def parse_args(argv=None) -> tuple[argparse.Namespace, TrainerConfig]:
    """The process's flags and the trainer's (generated from TrainerConfig); a value out of bounds stops here."""
    p = argparse.ArgumentParser(prog="rlkube_trainer.server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="0 picks a free port (see the ready line)")
    p.add_argument("--nproc-per-node", type=int, default=1,
                   help="trainer processes on this node (one per GPU); WORLD_SIZE/NODE_RANK/MASTER_ADDR/MASTER_PORT "
                        "from the environment give the nodes")
    p.add_argument("--threads", type=int, default=defaults.THREADS, help="torch CPU threads")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    config.add_arguments(p)
    a = p.parse_args(argv)
    try:
        return a, config.from_args(a)
    except ValueError as e:
        p.error(str(e))


def build_trainer(cfg: TrainerConfig, dist=None, device=None) -> Trainer:
    return Trainer(dataclasses.replace(cfg, device=device), dist)


def make_trainer_server(trainer: Trainer, host: str, port: int, verbose: bool = False):
    return make_server(host, port, {
        ("GET", "/health"): lambda _: {"ok": True},
        ("GET", "/v1/state"): lambda _: trainer.state(),
        ("POST", "/v1/train_step"): trainer.train_step,
    }, verbose=verbose)


def _follower(index: int, a: argparse.Namespace, cfg: TrainerConfig) -> None:
    """Local rank index + 1 of this node (a child process): follows global rank 0's steps."""
    local_rank = index + 1
    torch.set_num_threads(a.threads)
    dist = init_from_env(local_rank=local_rank, nproc_per_node=a.nproc_per_node)
    build_trainer(cfg, dist, device_for(local_rank)).follow()


def main(argv=None) -> int:
    a, cfg = parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.nproc_per_node > 1:  # local ranks 1.. as child processes (they die with this one: daemonic)
        mp.start_processes(_follower, args=(a, cfg), nprocs=a.nproc_per_node - 1, join=False, daemon=True,
                           start_method="spawn")
    try:
        dist = init_from_env(local_rank=0, nproc_per_node=a.nproc_per_node)
        trainer = build_trainer(cfg, dist, device_for(0))
    except (ValueError, OSError, RuntimeError) as e:  # unreadable dir, checkpoint of another shape, bad weights
        print(f"trainer: {e}", file=sys.stderr)
        return 2
    server = make_trainer_server(trainer, a.host, a.port, a.verbose)
    st = trainer.state()
    announce_ready(role="trainer", port=server.server_address[1], model=cfg.model, step=st["step"],
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
