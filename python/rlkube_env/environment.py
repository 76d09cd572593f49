"""What every environment is: a deterministic task per sequence number and a grader; the declaration of the args
it takes (its Signature, the one source of the environment catalogue); the errors that name a field."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple, Union

Args = Mapping[str, Any]


@dataclass
class Task:
    prompt: str
    # What the grader compares against: kept by the environment server, never sent to a rollout worker's engine.
    answer: str
    # The environment's own record of the task (a reasoning-gym entry, a verifiers row), for its grader.
    entry: Optional[Dict[str, Any]] = None


@dataclass
class Score:
    reward: float
    details: Dict[str, Any] = field(default_factory=dict)


class Environment(Protocol):
    name: str
    # Names the grader (and its version) in every trajectory group.
    grader_id: str
    # The args it takes and whether it reads a dataset (the catalogue is made of these).
    signature: Signature

    def task(self, seq: int) -> Task:
        """Task `seq`: a pure function of the job's seed and seq, so every process agrees on it."""

    def task_of_answer(self, answer: str) -> Task:
        """A task whose reference answer is `answer` (scoring a user's (answer, completion) pairs)."""

    def score(self, task: Task, completion: str) -> Score:
        """Reward in [0, 1] of one completion."""


class EnvironmentUnusable(Exception):
    """An environment this job cannot use. reason: CamelCase (UnknownEnvironment, InvalidEnvironmentArgs,
    DatasetUnreadable, PluginUnavailable, ...); field: the manifest field at fault (environment.args.minLength)."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.reason, self.field, self.message = reason, field, f"{field}: {message}"

    def to_json(self) -> dict:
        return {"reason": self.reason, "field": self.field, "message": self.message}


M32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    return (a * b) & M32


def rng(seed: int, seq: int):
    """mulberry32 seeded from (seed, seq), bit for bit the generator the TypeScript environments used, so the
    tasks of a job are the ones they were (the learning benchmarks and examples keep their numbers)."""
    state = (_imul((seed & M32) ^ 0x9E3779B9, 0x85EBCA6B) ^ _imul((seq + 1) & M32, 0xC2B2AE35)) & M32

    def next_float() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & M32
        t = state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return next_float


def unusable(name: str, message: str) -> EnvironmentUnusable:
    return EnvironmentUnusable("InvalidEnvironmentArgs", f"environment.args.{name}", message)


def shown(value: Any) -> str:
    """A value as the messages show it: JSON, the way the TypeScript pre-check (api/environment-check.ts) shows it."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def integer_of(value: Any) -> Optional[int]:
    """An integer argument: a number without a fraction, or a string of decimal digits; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
        return int(value)
    return None


@dataclass(frozen=True)
class IntArg:
    """An integer argument in [minimum, maximum]; required when it has no default."""
    name: str
    about: str
    minimum: int
    maximum: int
    default: Optional[int] = None

    @property
    def meaning(self) -> str:
        return f"an integer in [{self.minimum}, {self.maximum}]"

    def read(self, value: Any) -> int:
        n = integer_of(value)
        if n is None or not self.minimum <= n <= self.maximum:
            raise unusable(self.name, f"must be {self.meaning}, got {shown(value)}")
        return n

    def describe(self) -> Dict[str, Any]:
        return {"type": "integer", "description": self.about, "minimum": self.minimum, "maximum": self.maximum,
                **({} if self.default is None else {"default": self.default})}


@dataclass(frozen=True)
class TextArg:
    """A string argument matching `pattern` whole (written so that Python's re and JavaScript's RegExp read it
    alike); `meaning` says in words what the pattern asks for. Required when it has no default."""
    name: str
    about: str
    pattern: str
    meaning: str
    default: Optional[str] = None

    def read(self, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise unusable(self.name, f"must be {self.meaning}, got {shown(value)}")
        return value

    def describe(self) -> Dict[str, Any]:
        return {"type": "string", "description": self.about, "pattern": f"^(?:{self.pattern})$", "x-meaning": self.meaning,
                **({} if self.default is None else {"default": self.default})}


Arg = Union[IntArg, TextArg]


@dataclass(frozen=True)
class NotAbove:
    """A rule across two integer arguments: `arg` is at most `limit` (reverse's minLength and maxLength)."""
    arg: str
    limit: str

    def check(self, values: Dict[str, Any]) -> None:
        if values[self.arg] > values[self.limit]:
            raise unusable(self.arg, f"{values[self.arg]} is above environment.args.{self.limit} {values[self.limit]}")

    def describe(self) -> Dict[str, Any]:
        return {"rule": "notAbove", "arg": self.arg, "limit": self.limit}


@dataclass(frozen=True)
class Signature:
    """What an environment takes, declared once: the environment reads its args through it, and
    `python -m rlkube_env.cli describe` prints it for the checks made before anything runs (the committed
    api/generated/environments.json). more_args: what undeclared args are when the environment passes them on
    (a plug-in's own config); None refuses them. dataset: whether it reads environment.dataset (then needs one)."""
    args: Tuple[Arg, ...] = ()
    rules: Tuple[NotAbove, ...] = ()
    more_args: Optional[str] = None
    dataset: bool = False

    def read(self, args: Args, environment: str) -> Dict[str, Any]:
        """The declared args (defaults filled in, checked in declaration order, then the rules) and, when taken,
        the undeclared ones as given."""
        declared = {arg.name: arg for arg in self.args}
        if self.more_args is None:
            for key in args:
                if key not in declared:
                    raise unusable(key, f"is not an argument of {environment} (it takes {', '.join(declared) or 'none'})")
        values = {key: value for key, value in args.items() if key not in declared}
        for arg in self.args:
            if arg.name in args:
                values[arg.name] = arg.read(args[arg.name])
            elif arg.default is None:
                raise unusable(arg.name, f"is required: {arg.meaning}")
            else:
                values[arg.name] = arg.default
        for rule in self.rules:
            rule.check(values)
        return values

    def describe(self) -> Dict[str, Any]:
        return {
            "dataset": "required" if self.dataset else "none",
            "args": {
                "type": "object",
                "properties": {arg.name: arg.describe() for arg in self.args},
                "required": [arg.name for arg in self.args if arg.default is None],
                "additionalProperties": self.more_args is not None,
                **({"x-more-args": self.more_args} if self.more_args is not None else {}),
            },
            "rules": [rule.describe() for rule in self.rules],
        }
