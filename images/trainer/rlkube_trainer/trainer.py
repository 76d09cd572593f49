"""The GRPO trainer: one optimizer step per batch of groups, versioned policy files, checkpoints, resume."""
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
from dataclasses import dataclass
from typing import List, Optional

import torch

from . import config, grpo
from .httpjson import ApiError, req_int, req_list, req_number
from .model import build_policy, completion_log_probs
from .weights import atomic_write, deserialize, digest_of, serialize

CHECKPOINT_FORMAT = "rlkube-trainer-checkpoint/1"
LOGPROB_SLACK = 1e-3  # a behavior log-prob above this is not a log-prob


@dataclass
class TrainerConfig:
    checkpoint_dir: str
    model: str = config.MODEL
    lr: float = config.LR
    temperature: float = config.TEMPERATURE
    clip_low: float = config.CLIP_LOW
    clip_high: float = config.CLIP_HIGH
    kl_coef: float = config.KL_COEF
    is_cap: float = config.IS_CAP
    max_grad_norm: float = config.MAX_GRAD_NORM
    minibatches: int = config.MINIBATCHES
    skip_uniform_groups: bool = config.SKIP_UNIFORM_GROUPS
    adam_beta2: float = config.ADAM_BETA2
    logprob_tolerance: float = config.LOGPROB_TOLERANCE
    sampled_positions: int = config.SAMPLED_POSITIONS
    seed: int = config.SEED
    n_layer: int = config.N_LAYER
    d_model: int = config.D_MODEL
    n_head: int = config.N_HEAD
    max_len: int = config.MAX_LEN
    lora_rank: int = 0
    lora_alpha: int = 0
    init_weights: Optional[str] = None
    check_seed: Optional[int] = None  # positions of the logprob check; default: a per-process secret
    keep_policies: int = config.KEEP_POLICIES
    keep_checkpoints: int = config.KEEP_CHECKPOINTS
    keep_results: int = config.KEEP_RESULTS

    def validate(self) -> None:
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (self.temperature > 0, "temperature must be > 0 (the trainer re-computes sampled log-probs)"),
            (0 <= self.clip_low < 1, "clip-low must be in [0, 1)"),
            (self.clip_high >= 0, "clip-high must be >= 0"),
            (self.kl_coef >= 0, "kl-coef must be >= 0"),
            (self.is_cap > 0, "is-cap must be > 0"),
            (self.logprob_tolerance >= 0, "logprob-tolerance must be >= 0"),
            (self.sampled_positions >= 1, "sampled-positions must be >= 1"),
            (self.minibatches >= 1, "minibatches must be >= 1"),
            (self.keep_policies >= 0 and self.keep_checkpoints >= 1, "keep-* must be >= 1 (policies: 0 = all)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


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
    (step s trains on groups of version <= s and produces version s+1). Thread-safe."""

    def __init__(self, cfg: TrainerConfig):
        cfg.validate()
        self.cfg = cfg
        self.dir = os.path.abspath(cfg.checkpoint_dir)
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()
        self.policy = self._build()
        self.opt = torch.optim.Adam(self.policy.trainable_parameters(), lr=cfg.lr,
                                    betas=(0.9, cfg.adam_beta2))
        self.step = 0
        self.version = 0
        self.results: dict = {}
        self.digest = ""
        self.weights_path = ""
        self.resumed_from: Optional[str] = None
        # workers must not know which positions get checked: a secret unless a test pins it
        self.check_key = str(cfg.check_seed) if cfg.check_seed is not None else os.urandom(16).hex()
        if not self._resume():
            if cfg.init_weights:
                with open(cfg.init_weights, "rb") as f:
                    self.policy.load_policy_state(deserialize(f.read()))
            self._write_policy()
            self._write_checkpoint()
        for g in self.opt.param_groups:  # flags win over a resumed optimizer's settings
            g["lr"], g["betas"] = cfg.lr, (0.9, cfg.adam_beta2)
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = self._build()
            with open(self._policy_path(0), "rb") as f:
                self.ref.load_policy_state(deserialize(f.read()))
            for p in self.ref.module.parameters():
                p.requires_grad_(False)

    # --- files -------------------------------------------------------------------------------------

    def _build(self):
        c = self.cfg
        return build_policy(c.model, c.seed, n_layer=c.n_layer, d_model=c.d_model, n_head=c.n_head,
                            max_len=c.max_len, lora_rank=c.lora_rank, lora_alpha=c.lora_alpha)

    def _policy_path(self, version: int) -> str:
        return os.path.join(self.dir, f"policy-v{version}.pt")

    def _checkpoint_path(self, step: int) -> str:
        return os.path.join(self.dir, f"checkpoint-s{step:08d}.pt")

    def _write_policy(self) -> None:
        data = serialize(self.policy.policy_state())
        path = self._policy_path(self.version)
        atomic_write(path, data)
        self.weights_path, self.digest = path, digest_of(data)
        if self.cfg.keep_policies > 0:
            for v in _numbered(self.dir, r"policy-v(\d+)\.pt"):
                if 0 < v <= self.version - self.cfg.keep_policies:
                    _unlink(self._policy_path(v))

    def _write_checkpoint(self) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.cfg.model,
            "step": self.step,
            "version": self.version,
            "digest": self.digest,
            "model": self.policy.policy_state(),
            "optimizer": self.opt.state_dict(),
            "results": self.results,
        }
        atomic_write(self._checkpoint_path(self.step), serialize(state))
        for s in _numbered(self.dir, r"checkpoint-s(\d+)\.pt"):
            if s <= self.step - self.cfg.keep_checkpoints:
                _unlink(self._checkpoint_path(s))

    def _resume(self) -> bool:
        for s in sorted(_numbered(self.dir, r"checkpoint-s(\d+)\.pt"), reverse=True):
            path = self._checkpoint_path(s)
            try:
                with open(path, "rb") as f:
                    state = deserialize(f.read())
                if state.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError(f"unknown format {state.get('format')!r}")
            except Exception as e:  # noqa: BLE001 - a torn or foreign file: fall back to an older one
                print(json.dumps({"event": "checkpoint_skipped", "path": path, "error": f"{type(e).__name__}: {e}"}),
                      file=sys.stderr, flush=True)
                continue
            if state["model_name"] != self.cfg.model:
                raise ValueError(f"checkpoint {path} is for model {state['model_name']!r}, not {self.cfg.model!r}")
            self.policy.load_policy_state(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.step, self.version = int(state["step"]), int(state["version"])
            self.results = dict(state["results"])
            data = serialize(self.policy.policy_state())
            self.weights_path, self.digest = self._policy_path(self.version), digest_of(data)
            if not _file_has_digest(self.weights_path, self.digest):
                atomic_write(self.weights_path, data)
            self.resumed_from = path
            return True
        return False

    # --- API ---------------------------------------------------------------------------------------

    def state(self) -> dict:
        with self.lock:
            return {"step": self.step, "version": self.version, "weights_path": self.weights_path,
                    "digest": self.digest}

    def train_step(self, body: dict) -> dict:
        step = req_int(body, "step", "", minimum=0)
        with self.lock:
            if step < self.step:
                if step not in self.results:
                    raise ApiError("StepUnavailable", f"step {step} was done but its result is no longer kept", 409)
                return {**self.results[step], "replayed": True}
            if step > self.step:
                raise ApiError("StepOutOfOrder", f"step {step} requested; the next step is {self.step}")
            _, groups = parse_train_step(body)
            result = self._train(step, groups)
            self.results[step] = result
            for s in [s for s in self.results if s <= step - self.cfg.keep_results]:
                del self.results[s]
            self._write_checkpoint()
            return result

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

        # 1. The current policy's log-probs of every usable token (no grad): the ratio's old policy, the
        #    GRAIL-style check against the worker's behavior log-probs, the IS weights of stale groups.
        accepted, mismatches = [], []
        old = {}
        all_pairs = [(g.prompt, c["token_ids"]) for g in usable for c in g.completions]
        if any(c for _, c in all_pairs):
            with torch.no_grad():
                lp_all, _ = completion_log_probs(self.policy, all_pairs, cfg.temperature)
            lp_all, r = lp_all.cpu(), 0
            for g in usable:
                old[g.index] = lp_all[r:r + len(g.completions)]
                r += len(g.completions)
        else:
            old = {g.index: torch.zeros(len(g.completions), 0) for g in usable}
        for g in usable:
            flat_t = [float(x) for row, c in zip(old[g.index], g.completions) for x in row[: len(c["token_ids"])]]
            flat_b = [x for c in g.completions for x in c["logprobs"]]
            pos = grpo.sample_positions(len(flat_t), cfg.sampled_positions, random.Random(f"{self.check_key}:{step}:{g.index}"))
            mm = grpo.logprob_mismatch(flat_t, flat_b, pos) if pos else 0.0
            if g.policy_version == self.version:
                # only groups of the current version must match; older ones differ by design and are
                # re-weighted by truncated IS instead
                mismatches.append(mm)
                if mm > cfg.logprob_tolerance:
                    rejected.append({"index": g.index, "reason": "LogprobMismatch", "value": mm})
                    continue
            accepted.append(g)

        # 2. Minibatches of whole groups, one optimizer step each, all against the same old policy.
        learn = [g for g in accepted if any(c["token_ids"] for c in g.completions)]
        if cfg.skip_uniform_groups:
            # all-equal rewards: zero advantages, no gradient; left in, they only dilute the token mean
            # of the informative groups (what DAPO's dynamic sampling filters out)
            learn = [g for g in learn if len({c["reward"] for c in g.completions}) > 1]
        n_mb = max(1, min(cfg.minibatches, len(learn)))
        sums = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "is_weight_mean": 0.0}
        tokens, grad_norms = 0, []
        for k in range(n_mb):
            mb = learn[k * len(learn) // n_mb:(k + 1) * len(learn) // n_mb]
            if not mb:
                continue
            pairs = [(g.prompt, c["token_ids"]) for g in mb for c in g.completions]
            logp, mask = completion_log_probs(self.policy, pairs, cfg.temperature)
            dev = logp.device
            logp_old = torch.cat([_pad_to(old[g.index], logp.shape[1]) for g in mb]).to(dev)
            beh = torch.zeros_like(logp)
            i = 0
            for g in mb:
                for c in g.completions:
                    if c["logprobs"]:
                        beh[i, : len(c["logprobs"])] = torch.tensor(c["logprobs"], dtype=beh.dtype)
                    i += 1
            adv = torch.cat([grpo.group_advantages(torch.tensor([c["reward"] for c in g.completions])) for g in mb])
            stale = torch.tensor([g.policy_version < self.version for g in mb for _ in g.completions])
            logp_ref = None
            if self.ref is not None:
                with torch.no_grad():
                    logp_ref, _ = completion_log_probs(self.ref, pairs, cfg.temperature)
            self.policy.module.train()
            loss, st = grpo.grpo_loss(logp, logp_old, beh, adv.to(dev), mask, stale.to(dev), clip_low=cfg.clip_low,
                                      clip_high=cfg.clip_high, is_cap=cfg.is_cap, kl_coef=cfg.kl_coef, logp_ref=logp_ref)
            if st["tokens"] == 0:
                continue
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.policy.trainable_parameters(), cfg.max_grad_norm)))
            self.opt.step()
            tokens += st["tokens"]
            for key in ("kl", "clip_frac", "is_weight_mean"):
                sums[key] += st[key] * st["tokens"]
            sums["loss"] += float(loss.item()) * st["tokens"]

        rewards = [c["reward"] for g in accepted for c in g.completions]
        n_comp = max(1, len(rewards))
        r_mean = sum(rewards) / n_comp
        metrics = {key: v / max(1, tokens) for key, v in sums.items()}
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
            "groups_stale": sum(1 for g in accepted if g.policy_version < self.version),
            "groups_rejected": len(rejected),
            "groups_trained": len(learn),
            "completion_len_mean": sum(len(c["token_ids"]) for g in accepted for c in g.completions) / n_comp,
        })
        self.step = step + 1
        self.version += 1
        self._write_policy()
        metrics["step_seconds"] = time.time() - t0
        metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
        return {"step": step, "version": self.version, "weights_path": self.weights_path, "digest": self.digest,
                "metrics": metrics, "rejected": sorted(rejected, key=lambda x: x["index"])}


def _words(text: str) -> str:
    return " ".join(text.split())


def _pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.cat([t, torch.zeros(t.shape[0], width - t.shape[1], dtype=t.dtype)], dim=1)


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


def _file_has_digest(path: str, digest: str) -> bool:
    try:
        with open(path, "rb") as f:
            return digest_of(f.read()) == digest
    except FileNotFoundError:
        return False

