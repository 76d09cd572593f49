"""The GRPO trainer: one train_step per batch of groups, versioned policy files, checkpoints every N steps,
resume, and data parallelism across learner ranks (rank 0 serves the API; see distributed.py)."""
from __future__ import annotations

import glob
import json
import math
import os
import random
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import List, Optional

import torch

from rlkube_http import ApiError, req_int, req_list, req_number
from rlkube_policy.model import build_policy, completion_log_probs, completion_log_probs_chunked, micro_batch_slices
from rlkube_policy.weights import atomic_write, deserialize, file_digest, read_policy, serialize, write_policy

from . import grpo
from .config import TrainerConfig
from .distributed import Dist

CHECKPOINT_FORMAT = "rlkube-trainer-checkpoint/2"
LOGPROB_SLACK = 1e-3  # a behavior log-prob above this is not a log-prob


@dataclass
class Group:
    index: int
    policy_version: int
    prompt: List[int]
    completions: List[dict]  # {token_ids, logprobs, reward, text?}
    prompt_text: Optional[str] = None  # the task's prompt as the learner issued it


def parse_train_step(body: dict) -> tuple:
    """Shape checks of a train_step request (400 on failure). Value checks are per group, later."""
    step = req_int(body, "step", "", minimum=0)
    groups = []
    for gi, g in enumerate(req_list(body, "groups", "", nonempty=True)):
        where = f"groups[{gi}]."
        if not isinstance(g, dict):
            raise ApiError("BadRequest", f"groups[{gi}] must be an object")
        pv = req_int(g, "policy_version", where, minimum=0)
        prompt = _int_list(g, "prompt_token_ids", where, nonempty=True)
        comps = []
        for ci, c in enumerate(req_list(g, "completions", where, nonempty=True)):
            cw = f"{where}completions[{ci}]."
            if not isinstance(c, dict):
                raise ApiError("BadRequest", f"{where}completions[{ci}] must be an object")
            ids = _int_list(c, "token_ids", cw)
            lps = req_list(c, "logprobs", cw)
            if len(lps) != len(ids):
                raise ApiError("BadRequest", f"{cw}logprobs has {len(lps)} entries for {len(ids)} token_ids")
            lps = [req_number({"v": v}, "v", f"{cw}logprobs[{k}] ") for k, v in enumerate(lps)]
            comp = {"token_ids": ids, "logprobs": lps, "reward": req_number(c, "reward", cw)}
            if "text" in c:
                comp["text"] = _str(c, "text", cw)
            comps.append(comp)
        groups.append(Group(gi, pv, prompt, comps, _str(g, "prompt", where) if "prompt" in g else None))
    return step, groups


def _str(obj: dict, key: str, where: str) -> str:
    if not isinstance(obj[key], str):
        raise ApiError("BadRequest", f"{where}{key} must be a string")
    return obj[key]


def _int_list(obj: dict, key: str, where: str, nonempty: bool = False) -> List[int]:
    v = req_list(obj, key, where, nonempty=nonempty)
    if any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise ApiError("BadRequest", f"{where}{key} must be a list of integers")
    return v


class Trainer:
    """Holds the policy, the optimizer and the step counter. Version N is the policy after N steps
    (step s trains on groups of version <= s and produces version s+1). Thread-safe.

    Files (rank 0 only): `policy-v{N}.safetensors` every step (what the bus publishes; the newest is where a
    restart resumes its weights), `result-s{N}.json` every step (a retried step is answered, not redone), and
    `checkpoint-s{N}.pt` (optimizer state) every `checkpoint_every` steps: a restart takes the optimizer's
    moments from the newest checkpoint, at most checkpoint_every - 1 steps older than the weights.
    With several ranks every rank builds a Trainer; rank 0's train_step drives the others (`follow`)."""

    def __init__(self, cfg: TrainerConfig, dist: Optional[Dist] = None):
        cfg.validate()
        self.cfg = cfg
        self.dist = dist or Dist()
        self.dir = os.path.abspath(cfg.checkpoint_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()
        self.policy = self._build()
        self.opt = torch.optim.Adam(self.policy.trainable_parameters(), lr=cfg.lr,
                                    betas=(cfg.adam_beta1, cfg.adam_beta2))
        self.step = 0
        self.version = 0
        self.results: dict = {}
        self.digest = ""
        self.weights_path = ""
        self.resumed_from: Optional[str] = None
        # workers must not know which positions get checked: a secret unless a test pins it
        self.check_key = str(cfg.check_seed) if cfg.check_seed is not None else os.urandom(16).hex()
        if self.dist.rank == 0 and not self._resume():
            if cfg.init_weights:
                self.policy.load_policy_state(read_policy(cfg.init_weights)[0])
            self._write_policy()
            self._write_checkpoint()
        self._sync_ranks()
        for g in self.opt.param_groups:  # flags win over a resumed optimizer's settings
            g["lr"], g["betas"] = cfg.lr, (cfg.adam_beta1, cfg.adam_beta2)
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = self._build()
            ref_state = self.dist.broadcast(read_policy(self._policy_path(0))[0] if self.dist.rank == 0 else None)
            self.ref.load_policy_state(ref_state)
            for p in self.ref.module.parameters():
                p.requires_grad_(False)

    # --- files -------------------------------------------------------------------------------------

    def _build(self):
        c = self.cfg
        return build_policy(c.model, c.seed, n_layer=c.n_layer, d_model=c.d_model, n_head=c.n_head,
                            max_len=c.max_len, lora_rank=c.lora_rank, lora_alpha=c.lora_alpha, device=c.device)

    def _policy_path(self, version: int) -> str:
        return os.path.join(self.dir, f"policy-v{version}.safetensors")

    def _checkpoint_path(self, step: int) -> str:
        return os.path.join(self.dir, f"checkpoint-s{step:08d}.pt")

    def _result_path(self, step: int) -> str:
        return os.path.join(self.dir, f"result-s{step:08d}.json")

    def _write_policy(self) -> None:
        path = self._policy_path(self.version)
        self.digest = write_policy(path, self.policy.policy_state(), self.policy.kind, self.version,
                                   self.policy.file_metadata())
        self.weights_path = path
        if self.cfg.keep_policies > 0:
            for v in _numbered(self.dir, r"policy-v(\d+)\.safetensors"):
                if 0 < v <= self.version - self.cfg.keep_policies:  # v0 stays: the KL reference
                    _unlink(self._policy_path(v))

    def _write_checkpoint(self) -> None:
        if self.step % self.cfg.checkpoint_every:
            return
        state = {"format": CHECKPOINT_FORMAT, "model_name": self.cfg.model, "step": self.step,
                 "version": self.version, "digest": self.digest, "optimizer": self.opt.state_dict()}
        atomic_write(self._checkpoint_path(self.step), serialize(state))
        kept = sorted(_numbered(self.dir, r"checkpoint-s(\d+)\.pt"), reverse=True)[self.cfg.keep_checkpoints:]
        for s in kept:
            _unlink(self._checkpoint_path(s))

    def _write_result(self, step: int, result: dict) -> None:
        self.results[step] = result
        atomic_write(self._result_path(step), json.dumps(result).encode())
        for s in [s for s in self.results if s <= step - self.cfg.keep_results]:
            del self.results[s]
            _unlink(self._result_path(s))

    def _resume(self) -> bool:
        """Weights from the newest readable policy file, optimizer state from the newest checkpoint at or
        before it; nothing to resume from: False."""
        for v in sorted(_numbered(self.dir, r"policy-v(\d+)\.safetensors"), reverse=True):
            path = self._policy_path(v)
            try:
                tensors, meta = read_policy(path)
            except ValueError as e:  # a torn file: fall back to an older version
                _event("policy_skipped", path=path, error=str(e))
                continue
            if meta.get("rlkube.kind") != self.policy.kind:
                raise ValueError(f"{path} holds {meta.get('rlkube.kind')} weights; "
                                 f"this trainer trains {self.policy.kind} ({self.cfg.model})")
            self.policy.load_policy_state(tensors)
            self.step = self.version = v
            self.weights_path, self.digest = path, file_digest(path)
            break
        else:
            return False
        for s in sorted(_numbered(self.dir, r"checkpoint-s(\d+)\.pt"), reverse=True):
            if s > self.step:
                continue
            try:
                with open(self._checkpoint_path(s), "rb") as f:
                    state = deserialize(f.read())
                if state.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"unknown format {state.get('format')!r}")
                if state["model_name"] != self.cfg.model:
                    raise ValueError(f"checkpoint is for model {state['model_name']!r}, not {self.cfg.model!r}")
                self.opt.load_state_dict(state["optimizer"])
                break
            except Exception as e:  # noqa: BLE001 - a torn or foreign file: an older one, or fresh moments
                _event("checkpoint_skipped", path=self._checkpoint_path(s), error=f"{type(e).__name__}: {e}")
        for s in _numbered(self.dir, r"result-s(\d+)\.json"):
            try:
                with open(self._result_path(s)) as f:
                    self.results[s] = json.load(f)
            except (OSError, ValueError):
                continue
        self.resumed_from = self.weights_path
        return True

    def _sync_ranks(self) -> None:
        """Every rank starts from rank 0's weights, optimizer state, step and check key."""
        if not self.dist.active:
            return
        mine = None
        if self.dist.rank == 0:
            mine = {"weights": self.policy.policy_state(), "optimizer": self.opt.state_dict(), "step": self.step,
                    "version": self.version, "check_key": self.check_key}
        got = self.dist.broadcast(mine)
        if self.dist.rank != 0:
            self.policy.load_policy_state(got["weights"])
            self.opt.load_state_dict(got["optimizer"])
            self.step, self.version, self.check_key = got["step"], got["version"], got["check_key"]

    # --- API ---------------------------------------------------------------------------------------

    def state(self) -> dict:
        with self.lock:
            return {"step": self.step, "version": self.version, "weights_path": self.weights_path,
                    "digest": self.digest, "rank": self.dist.rank, "world_size": self.dist.world,
                    "vocab_size": self.policy.vocab_size}

    def train_step(self, body: dict) -> dict:
        if self.dist.rank != 0:
            raise ApiError("NotRankZero", f"rank {self.dist.rank} follows rank 0: send train_step to rank 0", 409)
        step = req_int(body, "step", "", minimum=0)
        with self.lock:
            if step < self.step:
                if step not in self.results:
                    raise ApiError("StepUnavailable", f"step {step} was done but its result is no longer kept", 409)
                return {**self.results[step], "replayed": True}
            if step > self.step:
                raise ApiError("StepOutOfOrder", f"step {step} requested; the next step is {self.step}")
            _, groups = parse_train_step(body)
            self.dist.broadcast(("train", step, groups))
            result = self._train(step, groups)
            self._write_result(step, result)
            self._write_checkpoint()
            return result

    def follow(self) -> None:
        """Ranks > 0: take part in rank 0's steps until it stops (or the process group breaks)."""
        while True:
            command = self.dist.broadcast()
            if command[0] == "stop":
                return
            _, step, groups = command
            self._train(step, groups)

    def stop_followers(self) -> None:
        if self.dist.rank == 0:
            self.dist.broadcast(("stop",))

    # --- the step ----------------------------------------------------------------------------------

    def _invalid(self, g: Group) -> Optional[tuple]:
        p = self.policy
        ok_ids = lambda ids: all(0 <= t < p.vocab_size and t not in p.banned_ids for t in ids)  # noqa: E731
        if not all(0 <= t < p.vocab_size for t in g.prompt):
            return "InvalidTokens", "prompt_token_ids out of the vocabulary"
        for ci, c in enumerate(g.completions):
            if not ok_ids(c["token_ids"]):
                return "InvalidTokens", f"completions[{ci}].token_ids out of the vocabulary or never sampled"
            if len(g.prompt) + len(c["token_ids"]) > p.max_len:
                return "InvalidTokens", f"completions[{ci}] is longer than the model's max length {p.max_len}"
            if any(lp > LOGPROB_SLACK for lp in c["logprobs"]):
                return "InvalidLogprobs", f"completions[{ci}].logprobs has a positive value"
        # The learner scored the texts and knows the task's prompt; the trainer trains on token ids. Both
        # must say the same, or a worker could claim a rewarded text for tokens it did not earn it with,
        # or a group of another prompt. Texts are compared up to whitespace runs, where an engine's
        # incremental detokenizer may differ from the tokenizer's decode.
        if g.prompt_text is not None:
            try:
                expected = p.encode_prompt(g.prompt_text)
            except ValueError:  # a prompt outside the vocabulary cannot have been sampled from
                expected = None
            if expected != g.prompt:
                return "PromptMismatch", "prompt_token_ids are not the tokens of the task's prompt"
        for ci, c in enumerate(g.completions):
            if "text" in c and _words(p.decode(c["token_ids"])) != _words(c["text"]):
                return "TextMismatch", f"completions[{ci}].text is not the text of its token_ids"
        return None

    @contextmanager
    def _weights_of(self, version: int):
        """The policy holds the weights of an earlier `version` (its policy file, read by rank 0 and sent to the
        others) inside the block and the current ones again after it. The current weights are copied, not
        re-read: the optimizer keeps its references to the same parameters."""
        current = {k: v.detach().clone() for k, v in self.policy.policy_state().items()}
        older = None
        if self.dist.rank == 0:
            older = read_policy(self._policy_path(version))[0]
        self.policy.load_policy_state(self.dist.broadcast(older))
        try:
            yield
        finally:
            self.policy.load_policy_state(current)

    def _has_policy(self, version: int) -> bool:
        """Every rank's answer is rank 0's: only rank 0 has the files."""
        return bool(self.dist.broadcast(os.path.exists(self._policy_path(version)) if self.dist.rank == 0 else None))

    def _behavior_log_probs(self, groups: List[Group], current: dict) -> tuple:
        """Each group's log-probs under the version it claims: the current policy's (`current`) for groups of
        this version, those of the version's policy file for older ones (one load per version). Returns
        ({group index: [G, T]}, [groups whose version's policy file is gone])."""
        out = {g.index: current[g.index] for g in groups if g.policy_version == self.version}
        gone = []
        for version in sorted({g.policy_version for g in groups if g.policy_version < self.version}):
            of_version = [g for g in groups if g.policy_version == version]
            if not self._has_policy(version):
                gone += of_version
                continue
            with self._weights_of(version):
                out.update(self._old_log_probs(of_version))
        return out, gone

    def _micro_batches(self, lengths: List[int]) -> List[slice]:
        """The micro-batches of rows of these lengths (prompt + completion), for the log-prob passes and training alike."""
        return micro_batch_slices(lengths, self.cfg.micro_batch, self.cfg.micro_batch_tokens)

    def _old_log_probs(self, groups: List[Group]) -> dict:
        """The policy's log-probs of every completion (no grad), micro-batched and shared out over the ranks:
        {group index: [G, T]}."""
        pairs = [(g.prompt, c["token_ids"]) for g in groups for c in g.completions]
        t_max = max((len(c) for _, c in pairs), default=0)
        lp = torch.zeros(len(pairs), t_max)
        cfg = self.cfg
        for k, part in enumerate(self._micro_batches([len(p) + len(c) for p, c in pairs])):
            if self.dist.mine(k):
                chunk = completion_log_probs_chunked(self.policy, pairs[part], cfg.temperature, cfg.micro_batch,
                                                     cfg.micro_batch_tokens)
                lp[part, : chunk.shape[1]] = chunk
        self.dist.sum_(lp)
        out, r = {}, 0
        for g in groups:
            out[g.index] = lp[r:r + len(g.completions)]
            r += len(g.completions)
        return out

    def _train(self, step: int, groups: List[Group]) -> dict:
        t0 = time.time()
        cfg = self.cfg
        rejected, usable = [], []
        for g in groups:
            if g.policy_version > self.version:
                rejected.append({"index": g.index, "reason": "FutureVersion", "value": g.policy_version})
                continue
            bad = self._invalid(g)
            if bad:
                rejected.append({"index": g.index, "reason": bad[0], "value": bad[1]})
                continue
            usable.append(g)

        # 1. The current policy's log-probs of every usable token (no grad): the ratio's old policy. Then each
        #    group's log-probs under the version it claims, whatever its age: the GRAIL-style check against the
        #    worker's behavior log-probs, and, once it passed, the behavior side of the IS weights of older
        #    groups. The trainer's own numbers, not the worker's: a worker cannot up-weight its group by
        #    reporting low log-probs at the positions the check did not sample.
        accepted, mismatches = [], []
        old = self._old_log_probs(usable)
        behavior, gone = self._behavior_log_probs(usable, old)
        for g in gone:
            rejected.append({"index": g.index, "reason": "UnknownVersion",
                             "value": f"policy v{g.policy_version} is no longer kept (keep-policies {cfg.keep_policies})"})
        for g in usable:
            if g.index not in behavior:
                continue
            flat_t = [float(x) for row, c in zip(behavior[g.index], g.completions, strict=True) for x in row[: len(c["token_ids"])]]
            flat_b = [x for c in g.completions for x in c["logprobs"]]
            pos = grpo.sample_positions(len(flat_t), cfg.sampled_positions, random.Random(f"{self.check_key}:{step}:{g.index}"))
            mm = grpo.logprob_mismatch(flat_t, flat_b, pos) if pos else 0.0
            mismatches.append(mm)
            if mm > cfg.logprob_tolerance:
                rejected.append({"index": g.index, "reason": "LogprobMismatch", "value": mm})
                continue
            accepted.append(g)

        # 2. Minibatches of whole groups, one optimizer step each, all against the same old policy; each
        #    minibatch in micro-batches of completions (gradient accumulation), shared out over the ranks.
        learn = [g for g in accepted if any(c["token_ids"] for c in g.completions)]
        if cfg.skip_uniform_groups:
            # all-equal rewards: zero advantages, no gradient; left in, they only dilute the token mean
            # of the informative groups (what DAPO's dynamic sampling filters out)
            learn = [g for g in learn if len({c["reward"] for c in g.completions}) > 1]
        n_mb = max(1, min(cfg.minibatches, len(learn)))
        sums = torch.zeros(5, dtype=torch.float64)  # loss, kl, clip_frac, is_weight (token-weighted), tokens
        grad_norms = []
        params = self.policy.trainable_parameters()
        for k in range(n_mb):
            mb = learn[k * len(learn) // n_mb:(k + 1) * len(learn) // n_mb]
            rows = [(g, c, float(a)) for g in mb
                    for c, a in zip(g.completions, grpo.group_advantages(torch.tensor([c["reward"] for c in g.completions])), strict=True)]
            old_rows = [row for g in mb for row in old[g.index]]
            behavior_rows = [row for g in mb for row in behavior[g.index]]
            n_tok = sum(len(c["token_ids"]) for _, c, _ in rows)
            if n_tok == 0:
                continue
            self.opt.zero_grad(set_to_none=True)
            self.policy.module.train()
            # every micro-batch's loss is scaled to its share of n_tok: the update is the same however rows are cut
            for j, part in enumerate(self._micro_batches([len(g.prompt) + len(c["token_ids"]) for g, c, _ in rows])):
                if self.dist.mine(j):
                    sums += self._accumulate(rows[part], old_rows[part], behavior_rows[part], n_tok)
            self.dist.sum_grads(params)
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
            self.opt.step()
        self.dist.sum_(sums)
        tokens = int(sums[4])
        metrics = {key: float(sums[i]) / max(1, tokens) for i, key in enumerate(("loss", "kl", "clip_frac", "is_weight_mean"))}

        rewards = [c["reward"] for g in accepted for c in g.completions]
        n_comp = max(1, len(rewards))
        r_mean = sum(rewards) / n_comp
        metrics.update({
            "tokens": tokens,
            "reward_mean": r_mean,
            "reward_std": (sum((r - r_mean) ** 2 for r in rewards) / n_comp) ** 0.5,
            "grad_norm": max(grad_norms, default=0.0),
            "optimizer_steps": len(grad_norms),
            "logprob_mismatch_median": grpo.median(mismatches),
            "logprob_mismatch_max": max(mismatches, default=0.0),
            "groups": len(groups),
            "groups_accepted": len(accepted),
            "groups_offpolicy": sum(1 for g in accepted if g.policy_version < self.version),
            "groups_rejected": len(rejected),
            "groups_trained": len(learn),
            "completion_len_mean": sum(len(c["token_ids"]) for g in accepted for c in g.completions) / n_comp,
        })
        self.step = step + 1
        self.version += 1
        if self.dist.rank == 0:
            self._write_policy()
        metrics["step_seconds"] = time.time() - t0
        metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
        return {"step": step, "version": self.version, "weights_path": self.weights_path, "digest": self.digest,
                "metrics": metrics, "rejected": sorted(rejected, key=lambda x: x["index"])}

    def _accumulate(self, rows: list, old_rows: list, behavior_rows: list, n_tok: int) -> torch.Tensor:
        """Forward + backward of one micro-batch, its loss scaled to its share of the minibatch's tokens.
        Returns its token-weighted [loss, kl, clip_frac, is_weight, tokens]."""
        cfg = self.cfg
        pairs = [(g.prompt, c["token_ids"]) for g, c, _ in rows]
        logp, mask = completion_log_probs(self.policy, pairs, cfg.temperature)
        dev = logp.device
        logp_old = torch.stack([_pad_row(r, logp.shape[1]) for r in old_rows]).to(dev)
        beh = torch.stack([_pad_row(r, logp.shape[1]) for r in behavior_rows]).to(dev)
        adv = torch.tensor([a for _, _, a in rows], dtype=torch.float32)
        off_policy = torch.tensor([g.policy_version < self.version for g, _, _ in rows])
        logp_ref = None
        if self.ref is not None:
            with torch.no_grad():
                logp_ref, _ = completion_log_probs(self.ref, pairs, cfg.temperature)
        loss, st = grpo.grpo_loss(logp, logp_old, beh, adv.to(dev), mask, off_policy.to(dev),
                                  clip_low=cfg.clip_low, clip_high=cfg.clip_high, is_cap=cfg.is_cap,
                                  kl_coef=cfg.kl_coef, logp_ref=logp_ref)
        t = st["tokens"]
        if t == 0:
            return torch.zeros(5, dtype=torch.float64)
        (loss * (t / n_tok)).backward()
        return torch.tensor([float(loss.item()) * t, st["kl"] * t, st["clip_frac"] * t, st["is_weight_mean"] * t, t],
                            dtype=torch.float64)


def _words(text: str) -> str:
    return " ".join(text.split())


def _pad_row(t: torch.Tensor, width: int) -> torch.Tensor:
    if t.shape[0] >= width:
        return t[:width]
    return torch.cat([t, torch.zeros(width - t.shape[0], dtype=t.dtype)])


def _event(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


def _numbered(d: str, pattern: str) -> List[int]:
    rx = re.compile(pattern + "$")
    out = []
    for p in glob.glob(os.path.join(d, "*")):
        m = rx.match(os.path.basename(p))
        if m:
            out.append(int(m.group(1)))
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
