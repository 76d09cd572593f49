"""Data parallelism across learner ranks with torch.distributed (gloo on CPU, NCCL on GPUs).

Rank 0 is the trainer the learner agent talks to; every other rank follows: rank 0 broadcasts each
command (a train_step's groups), every rank computes the gradients of its share of the micro-batches, the
gradients are summed with all_reduce, and every rank takes the same optimizer step, so all ranks hold the
same weights. Only rank 0 writes files. The process group comes from the environment the operator sets
(MASTER_ADDR, MASTER_PORT, WORLD_SIZE = learner nodes, NODE_RANK) times the GPUs per node.

A group has one backend, and every collective runs on a tensor of that backend's device (`Dist.device`): NCCL
reduces only CUDA tensors, and the trainer's log-prob buffer and metric sums are CPU tensors. They are moved to
the group's device for the collective and back, rather than the group being started as "cpu:gloo,cuda:nccl":
those tensors are small (N x T floats, 5 sums) next to the gradients, and a second, gloo mesh across the
learner nodes would be one more set of TCP connections (and interface choice) to fail for no gain.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional

import torch
import torch.distributed as dist

# Followers wait in a broadcast between steps for as long as rank 0 collects a batch.
IDLE_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    # the device the backend's collectives take tensors on: cuda:<local rank> under NCCL, the CPU under gloo
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world > 1

    def broadcast(self, obj: Any = None) -> Any:
        """rank 0's obj, on every rank."""
        if not self.active:
            return obj
        box: List[Any] = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def mine(self, index: int) -> bool:
        """Whether work item `index` (a micro-batch, a row chunk) is this rank's."""
        return index % self.world == self.rank

    def to_collective(self, t: torch.Tensor) -> torch.Tensor:
        """t on the group's device (t itself when it is there already)."""
        return t.to(self.device)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sums t over the ranks, in place, wherever t lives."""
        if self.active:
            self._all_reduce_sum(t)
        return t

    def _all_reduce_sum(self, t: torch.Tensor) -> None:
        on_group = self.to_collective(t)
        dist.all_reduce(on_group, op=dist.ReduceOp.SUM)
        if on_group is not t:
            t.copy_(on_group)

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sums the gradients over the ranks (a rank that had no micro-batch contributes zeros)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            self._all_reduce_sum(p.grad)


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
    device = torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    addr, port = env.get("MASTER_ADDR", "127.0.0.1"), env.get("MASTER_PORT", "29500")
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world,
                            timeout=IDLE_TIMEOUT)
    return Dist(rank=rank, world=world, device=device)


def device_for(local_rank: int) -> Optional[str]:
    return f"cuda:{local_rank}" if torch.cuda.is_available() else None
