"""Data parallelism across learner ranks with torch.distributed (gloo on CPU, NCCL on GPUs).

Rank 0 is the trainer the learner agent talks to; every other rank follows: rank 0 broadcasts each
command (a train_step's groups), every rank computes the gradients of its share of the micro-batches, the
gradients are summed with all_reduce, and every rank takes the same optimizer step, so all ranks hold the
same weights. Only rank 0 writes files. The process group comes from the environment the operator sets
(MASTER_ADDR, MASTER_PORT, WORLD_SIZE = learner nodes, NODE_RANK) times the GPUs per node.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional

import torch
import torch.distributed as dist

# Followers wait in a broadcast between steps for as long as rank 0 collects a batch.
IDLE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def broadcast(self, obj: Any = None) -> Any:
        """rank 0's obj, on every rank."""
        if not self.active:
            return obj
        box: List[Any] = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mine(self, index: int) -> bool:
        """Whether work item `index` (a micro-batch, a row chunk) is this rank's."""
        return index % self.world == self.rank

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sums the gradients over the ranks (a rank that had no micro-batch contributes zeros)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def init_from_env(env=None, local_rank: int = 0, nproc_per_node: int = 1) -> Dist:
    """Joins the process group the operator describes; a single process when WORLD_SIZE x nproc is 1."""
    env = os.environ if env is None else env
    nodes = int(env.get("WORLD_SIZE", "1"))
    node_rank = int(env.get("NODE_RANK", "0") or 0)
    world = nodes * nproc_per_node
    if world == 1:
        return Dist()
    rank = node_rank * nproc_per_node + local_rank
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    addr, port = env.get("MASTER_ADDR", "127.0.0.1"), env.get("MASTER_PORT", "29500")
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world,
                            timeout=IDLE_TIMEOUT)
    return Dist(rank=rank, world=world)


def device_for(local_rank: int) -> Optional[str]:
    return f"cuda:{local_rank}" if torch.cuda.is_available() else None
