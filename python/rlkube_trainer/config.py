"""The trainer's configuration, one typed source: every setting's type, default, bounds and help.

The trainer server's flags are generated from it (add_arguments), scripts/learn_check.py reuses them, and
`python -m rlkube_trainer.config describe` prints it as JSON, committed as api/generated/trainer-config.json:
the RLJob's defaults are checked against that file (test/unit/api-trainer-config.test.ts), and the file against
this module (test/integration/trainer-config.test.ts). A default here is the RLJob's default for the same knob;
a value tuned for one task (the tiny policy on `reverse`) is set by that task's manifest, not here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional

from rlkube_policy import defaults

BOUND_KEYWORDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")  # JSON Schema's, as the RLJob's


def setting(default: Any = dataclasses.MISSING, help: str = "", flag: bool = True, **bounds: float):
    """A TrainerConfig field: its default, what it means, its bounds (JSON Schema keywords) and whether it is a flag."""
    unknown = set(bounds) - set(BOUND_KEYWORDS)
    if unknown:
        raise TypeError(f"unknown bound keywords {sorted(unknown)}")
    return field(default=default, metadata={"help": help, "flag": flag, "bounds": bounds})


@dataclass
class TrainerConfig:
    checkpoint_dir: str = setting(help="policy files, step results and optimizer checkpoints go here")
    model: str = setting(defaults.MODEL, "'tiny' or 'hf:<name-or-path>'")
    # Algorithm: GRPO with a clipped ratio, truncated importance weights for off-policy groups, optional KL.
    lr: float = setting(1e-3, "Adam's learning rate", exclusiveMinimum=0)
    temperature: float = setting(1.0, "the job's sampling temperature: log-probs are those of logits/temperature",
                                 exclusiveMinimum=0)
    clip_low: float = setting(0.2, "the ratio's clip below 1 (1 - clip_low)", minimum=0, exclusiveMaximum=1)
    clip_high: float = setting(0.28, "the ratio's clip above 1 (1 + clip_high)", minimum=0)
    # 0: an LLM post-training default. examples/reverse-cpu.yaml sets klCoef 0.05 for the tiny policy from a random
    # init. Without it the stop decision collapses: a seed on a plateau (learn_check --seed 3, final 0.61) always
    # answers length-2 inputs with 1 character, length-3 with 4 and length-4 with 3, at temperature 1.1 — no
    # completion of another length is ever sampled again, so no group can teach it. The random init is near
    # uniform, so k3 KL to it works as an entropy floor. learn_check seeds 1-8, lag 0 / lag 1, seeds reaching a
    # 5-step mean of 0.8 within 150 steps: klCoef 0: 6/8, 4/8; 0.02: 7/8, 8/8; 0.05: 8/8, 8/8 (steps 42-122,
    # finals 0.81-0.96); 0.1: 8/8, 8/8 but finals held near 0.82. Temperature 1.3 instead: 5/8, 3/8.
    kl_coef: float = setting(0.0, "weight of the k3 KL to the initial policy (version 0)", minimum=0)
    # Capping at 1 (down-weighting only, V-trace's default) was measured against 2 and not kept. learn_check --lag 1
    # (every group one version old), step of the 5-step mean reaching 0.8 / final 10-step mean, seeds 1-4:
    # cap 2: 81/0.92, never/0.41, 124/0.71, 122/0.92; cap 1: 78/0.81, 72/0.87, 63/0.73, never/0.48 — 1 seed in 4
    # plateaus either way (completions of the wrong length: the stop position), as seed 3 does on-policy
    # (--lag 0: never/0.61). In `rlkube run` AsyncPushPull (10-30 % of groups one version old) cap 1 left seed 2
    # at 0.71, where cap 2 reached 0.8 at steps 47 and 43.
    is_cap: float = setting(2.0, "truncation of off-policy groups' importance weights", exclusiveMinimum=0)
    max_grad_norm: float = setting(1.0, "gradients are clipped to this global norm per optimizer step",
                                   exclusiveMinimum=0)
    adam_beta1: float = setting(0.9, "Adam's beta1", minimum=0, exclusiveMaximum=1)
    adam_beta2: float = setting(0.999, "Adam's beta2", minimum=0, exclusiveMaximum=1)
    # Several optimizer steps per batch mattered most on `reverse` from a random init (one step per batch plateaus
    # near 0.35-0.6 at any lr; lr 3e-3 collapses EOS and stalls).
    minibatches: int = setting(8, "optimizer steps per train_step: the batch's groups split into this many minibatches",
                               minimum=1)
    # True on `reverse`: steadier late (5/5 seeds end >= 0.83) but slower early (steps 43-112).
    skip_uniform_groups: bool = setting(False, "leave groups whose rewards are all equal out of the token mean")
    micro_batch: int = setting(16, "at most this many completions per forward/backward (gradients accumulate over "
                                   "them): bounds the trainer's peak memory, not what it learns", minimum=1)
    # A row count alone does not bound a forward's memory when completions are long and uneven; the padded token
    # count (rows x the longest prompt+completion) does. 16384 is verl's ppo_max_token_len_per_gpu default and above
    # the largest micro-batch measured on a GPU (`npm run bench -- gpu`: 16 x (256 + 512) = 12288 tokens of a
    # 0.5B-class model); the tiny policy (16 x max_len 32 = 512) never reaches it. No "off" value: a job that wants
    # rows only sets a budget above micro_batch x the longest sequence.
    micro_batch_tokens: int = setting(16384, "at most this many padded tokens per forward/backward (rows x their longest "
                                             "prompt+completion); a longer sequence goes alone", minimum=1)
    # Group checks (the RLJob's spec.verification).
    logprob_tolerance: float = setting(0.10, "a group's median exp(|logprob difference|) - 1 above this is rejected", minimum=0)
    sampled_positions: int = setting(32, "token positions per group the logprob check compares", minimum=1)
    check_seed: Optional[int] = setting(None, "seed of the logprob-check positions (default: a per-process secret)")
    # Model.
    seed: int = setting(defaults.SEED, "the initial weights' seed (engines use the same)", minimum=0)
    n_layer: int = setting(defaults.N_LAYER, "tiny model: layers", minimum=1)
    d_model: int = setting(defaults.D_MODEL, "tiny model: width", minimum=1)
    n_head: int = setting(defaults.N_HEAD, "tiny model: attention heads", minimum=1)
    max_len: int = setting(defaults.MAX_LEN, "tiny model: positions", minimum=1)
    lora_rank: int = setting(0, "HF models: LoRA rank (0 = full fine-tuning)", minimum=0)
    lora_alpha: int = setting(0, "HF models: LoRA alpha", minimum=0)
    init_weights: Optional[str] = setting(None, "a policy file to start from (warm start) instead of the seeded init")
    # Files.
    checkpoint_every: int = setting(10, "steps between optimizer checkpoints; policy files are written every step",
                                    minimum=1)
    keep_policies: int = setting(16, "newest policy files kept (v0, the KL reference, always): 0 keeps every one",
                                 minimum=0)
    keep_checkpoints: int = setting(2, "newest optimizer checkpoints kept", minimum=1)
    keep_results: int = setting(16, "newest step results kept (a retried step is answered from them)", minimum=1)
    device: Optional[str] = setting(None, "torch device; the server picks each rank's", flag=False)

    def validate(self) -> None:
        """Raises ValueError naming the flag of the first value outside its bounds."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and not within(value, f.metadata["bounds"]):
                raise ValueError(f"{flag_of(f.name)} must be {bounds_text(f.metadata['bounds'])} (got {value})")


def within(value: float, bounds: Dict[str, float]) -> bool:
    return all({
        "minimum": lambda b: value >= b, "exclusiveMinimum": lambda b: value > b,
        "maximum": lambda b: value <= b, "exclusiveMaximum": lambda b: value < b,
    }[k](b) for k, b in bounds.items())


def bounds_text(bounds: Dict[str, float]) -> str:
    words = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    return " and ".join(f"{words[k]} {b}" for k, b in bounds.items())


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


# The tiny policy on `reverse` from a random init (examples/reverse-cpu.yaml sets these in its RLJob; learn_check
# and warm_start default to them). Tuned with scripts/learn_check.py (G=8, B=32): 5 seeds reach a 5-step mean reward
# >= 0.8 at steps 60-80 with lr 1e-3 and 8 minibatches. A temperature slightly above 1 keeps exploring the stop
# position and the later characters; 1.0 leaves ~1 seed in 3 on a plateau near 0.75.
REVERSE_TEMPERATURE = 1.1
REVERSE_MAX_TOKENS = 8

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _types() -> Dict[str, tuple]:
    """Each field's Python type and whether it may be None."""
    out = {}
    for name, hint in typing.get_type_hints(TrainerConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = (args[0], True) if typing.get_origin(hint) is typing.Union else (hint, False)
    return out


def flag_fields() -> Iterable[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainerConfig) if f.metadata["flag"]]


def add_arguments(parser: argparse.ArgumentParser, skip: Iterable[str] = (),
                  overrides: Optional[Dict[str, Any]] = None) -> None:
    """Adds a flag per TrainerConfig field (but those in skip); `overrides` replaces some defaults (a script's task)."""
    types, overrides = _types(), overrides or {}
    for f in flag_fields():
        if f.name in skip:
            continue
        kind, _ = types[f.name]
        default = overrides.get(f.name, None if f.default is dataclasses.MISSING else f.default)
        help = f.metadata["help"] + (f" ({bounds_text(f.metadata['bounds'])})" if f.metadata["bounds"] else "")
        if kind is bool:
            parser.add_argument(flag_of(f.name), action=argparse.BooleanOptionalAction, default=default, help=help)
        else:
            parser.add_argument(flag_of(f.name), type=kind, default=default, help=help,
                                required=f.default is dataclasses.MISSING and f.name not in overrides)


def from_args(a: argparse.Namespace, **values: Any) -> TrainerConfig:
    """The TrainerConfig of parsed flags (those add_arguments added), `values` set beside them; validated."""
    given = {f.name: getattr(a, f.name) for f in flag_fields() if hasattr(a, f.name)}
    cfg = TrainerConfig(**{**given, **values})
    cfg.validate()
    return cfg


def describe() -> dict:
    """Every flag's name, type, default, bounds and help: what the RLJob's defaults are checked against."""
    types, out = _types(), []
    for f in flag_fields():
        kind, nullable = types[f.name]
        entry = {"name": f.name, "flag": flag_of(f.name), "type": _JSON_TYPES[kind], "help": f.metadata["help"]}
        if f.default is dataclasses.MISSING:
            entry["required"] = True
        else:
            entry["default"] = f.default
        if nullable:
            entry["nullable"] = True
        if f.metadata["bounds"]:
            entry["bounds"] = f.metadata["bounds"]
        out.append(entry)
    return {"$comment": "Generated by `python -m rlkube_trainer.config describe > api/generated/trainer-config.json` "
                        "from python/rlkube_trainer/config.py; do not edit by hand.", "settings": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rlkube_trainer.config", description=__doc__)
    p.add_argument("command", choices=["describe"], help="describe: print the settings as JSON")
    p.parse_args(argv)
    sys.stdout.write(json.dumps(describe(), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
