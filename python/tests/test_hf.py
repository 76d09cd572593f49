"""Hugging Face models: the tiny HF model made offline, LoRA and full fine-tuning, the hf engine agreeing
with the trainer, micro-batched log-probs, and data parallelism over 2 gloo ranks."""
import os
import socket
from collections import Counter

import pytest
import torch
import torch.multiprocessing as mp
from helpers import make_batch

from rlkube_engine.server import Engine
from rlkube_policy.model import build_policy, completion_log_probs, completion_log_probs_chunked
from rlkube_policy.tiny_hf import make_tiny_hf
from rlkube_policy.weights import read_policy
from rlkube_trainer.distributed import Dist
from rlkube_trainer.trainer import Trainer, TrainerConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return "hf:" + make_tiny_hf(str(tmp_path_factory.mktemp("models") / "tiny-qwen2"))


def hf_trainer(path, model, **kw):
    kw.setdefault("minibatches", 2)
    return Trainer(TrainerConfig(checkpoint_dir=str(path), model=model, seed=1, lr=1e-2, **kw))


@pytest.mark.parametrize("lora_rank,kind", [(4, "lora"), (0, "full")])
def test_a_step_trains_and_the_engine_serves_the_new_version(tmp_path, model_dir, lora_rank, kind):
    t = hf_trainer(tmp_path, model_dir, lora_rank=lora_rank)
    e = Engine(model_dir, seed=1, lora_rank=lora_rank)
    assert t.state()["digest"] == e.info()["digest"]  # the same seeded start on both sides
    batch = make_batch(e, 0)
    res = t.train_step(batch)
    assert res["rejected"] == [] and res["metrics"]["logprob_mismatch_median"] < 1e-3
    assert res["metrics"]["tokens"] > 0 and res["version"] == 1
    tensors, meta = read_policy(res["weights_path"])
    assert meta["rlkube.kind"] == kind
    if kind == "lora":  # only the adapter travels, under PEFT's names, with the config a PEFT folder needs
        assert tensors and all("lora_" in k for k in tensors)
        assert '"r": 4' in meta["rlkube.adapter_config"]
    else:
        assert any("embed_tokens" in k for k in tensors)
    e.load_weights({"path": res["weights_path"], "version": 1, "digest": res["digest"]})
    # the engine's log-probs for given tokens equal the trainer's after the update
    pairs = [(g["prompt_token_ids"], c["token_ids"]) for g in batch["groups"] for c in g["completions"]]
    with torch.no_grad():
        want, mask = completion_log_probs(t.policy, pairs, 1.1)
        got, _ = completion_log_probs(e.policy, pairs, 1.1)
    assert torch.allclose(want[mask], got[mask], atol=1e-5)
    before, _ = completion_log_probs(Engine(model_dir, seed=1, lora_rank=lora_rank).policy, pairs, 1.1)
    assert not torch.allclose(before[mask], got[mask], atol=1e-4)  # and the update did change them
    # a fresh batch from the updated engine passes the trainer's log-prob check at version 1
    assert t.train_step(make_batch(e, 1))["rejected"] == []


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_an_older_versions_groups_are_checked_against_its_weights_and_the_current_ones_stay(tmp_path, model_dir, lora_rank):
    t = hf_trainer(tmp_path, model_dir, lora_rank=lora_rank)
    e = Engine(model_dir, seed=1, lora_rank=lora_rank)
    t.train_step(make_batch(e, 0))
    loads, load = [], t.policy.load_policy_state
    t.policy.load_policy_state = lambda state: (loads.append({k: v.clone() for k, v in state.items()}), load(state))
    res = t.train_step(make_batch(e, 1))  # version-0 groups at version 1: v0's weights are loaded for the check
    assert res["rejected"] == [] and res["metrics"]["groups_offpolicy"] == 4
    assert res["metrics"]["logprob_mismatch_median"] < 1e-3
    # v0's weights for the check, then version 1's again (what the step trains from)
    v0, v1 = (read_policy(str(tmp_path / f"policy-v{v}.safetensors"))[0] for v in (0, 1))
    assert len(loads) == 2
    assert all(torch.equal(loads[0][k], v0[k]) for k in v0) and all(torch.equal(loads[1][k], v1[k]) for k in v1)


def test_micro_batched_log_probs_equal_the_whole_batch(model_dir):
    p = build_policy(model_dir, 1)
    g = torch.Generator().manual_seed(0)
    pairs = [(list(torch.randint(3, 40, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g)),
              list(torch.randint(3, 40, (int(torch.randint(0, 12, (1,), generator=g)),), generator=g)))
             for _ in range(37)]
    whole, mask = completion_log_probs(p, pairs, 0.9)
    for mb, tokens in ((1, None), (5, None), (16, None), (16, 40), (16, 1)):
        got = completion_log_probs_chunked(p, pairs, 0.9, mb, tokens)
        assert torch.allclose(got[mask], whole.detach()[mask], atol=1e-5), (mb, tokens)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _DeviceOnlyDist(Dist):
    """A Dist whose backend, like NCCL, takes tensors on its device only, played by gloo on CI's CPU: a tensor is
    "on the group's device" when it came out of to_collective (CI has no second device to move it to), and
    _guard_collectives fails any collective given another, as NCCL would fail a CPU tensor."""

    def __init__(self, rank, world):
        super().__init__(rank=rank, world=world)
        self.on_device = {}  # id -> tensor, held so that an id is never reused

    def to_collective(self, t):
        moved = t.clone()
        self.on_device[id(moved)] = moved
        return moved


def _guard_collectives(d: _DeviceOnlyDist, calls: Counter):
    """Wraps torch.distributed's collectives so that each asserts its tensors are on d's device (the object
    collectives: that they name it), and counts them."""
    import torch.distributed as dist

    def tensors(args):
        for a in args:
            for x in (a if isinstance(a, (list, tuple)) else [a]):
                if isinstance(x, torch.Tensor):
                    yield x

    def checked(name, collective):
        def guarded(*args, **kw):
            if name.endswith("_object") or name.endswith("_object_list"):
                assert kw.get("device") == d.device, f"{name} without device={d.device}: got {kw.get('device')}"
            for t in tensors([*args, *kw.values()]):
                assert id(t) in d.on_device, f"{name} of a tensor that was not moved to the group's device {d.device}"
            calls[name] += 1
            return collective(*args, **kw)
        return guarded

    for name in ("all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
                 "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "gather", "scatter",
                 "broadcast_object_list", "all_gather_object", "gather_object", "scatter_object_list"):
        setattr(dist, name, checked(name, getattr(dist, name)))


def _rank(rank, world, port, model, ckpt, batch, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    d, calls = _DeviceOnlyDist(rank, world), Counter()
    _guard_collectives(d, calls)
    t = Trainer(TrainerConfig(checkpoint_dir=ckpt, model=model, seed=1, lr=1e-2, minibatches=2, micro_batch=3,
                              check_seed=7), d)
    if rank == 0:
        t.train_step(batch)
        t.stop_followers()
    else:
        t.follow()
    torch.save({k: v.clone() for k, v in t.policy.module.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
    torch.save(dict(calls), os.path.join(out, f"calls{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_ranks_reach_the_weights_of_one_with_every_collective_on_the_groups_device(tmp_path, model_dir):
    batch = make_batch(Engine(model_dir, seed=1), 0)
    one = Trainer(TrainerConfig(checkpoint_dir=str(tmp_path / "one"), model=model_dir, seed=1, lr=1e-2, minibatches=2,
                                micro_batch=3, check_seed=7))
    res = one.train_step(batch)
    assert res["metrics"]["optimizer_steps"] == 2
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_rank, args=(2, _free_port(), model_dir, str(tmp_path / "two"), batch, str(out)), nprocs=2,
                       start_method="spawn")
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    n_params = len(one.policy.trainable_parameters())
    for rank in (0, 1):  # the guard saw the step's collectives: log-probs, 2 x the gradients, the metric sums
        calls = torch.load(out / f"calls{rank}.pt")
        assert calls["all_reduce"] == 1 + 2 * n_params + 1 and calls["broadcast_object_list"] > 0, calls
    start = build_policy(model_dir, 1).module.state_dict()
    for k, v in one.policy.module.state_dict().items():
        assert torch.equal(r0[k], r1[k]), k  # the ranks agree exactly
        if k.endswith("k_proj.bias"):
            # A key bias shifts every score of a query alike: its true gradient is 0, what is left is float noise,
            # which Adam's normalised step turns into +-lr either way. Bounded, not compared.
            assert (r0[k] - start[k]).abs().max() <= 2 * 1e-2 + 1e-6, k  # 2 optimizer steps at lr 1e-2
            continue
        # and with the single rank, up to float summation order, which Adam's normalised step amplifies where a
        # gradient element nearly cancels (seen: 3e-5 on 1 element of 4096); ranks that skipped or botched the
        # all-reduce would each step along their half-batch's gradient, most elements ~lr (1e-2) apart
        assert torch.allclose(r0[k], v, atol=1e-4), k
    assert any(not torch.allclose(start[k], v) for k, v in r0.items())  # the step did change the weights
