"""What every environment is: a deterministic task per sequence number and a grader; the errors that name a field."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Protocol

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
    verifier_id: str

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


def int_arg(args: Args, name: str, default: int, minimum: int, maximum: int) -> int:
    value = args.get(name, default)
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    n = int(number) if number is not None and number.is_integer() else None
    if n is None or n < minimum or n > maximum:
        raise EnvironmentUnusable("InvalidEnvironmentArgs", f"environment.args.{name}",
                               f"must be an integer in [{minimum}, {maximum}], got {value!r}")
    return n


def known_args(args: Args, allowed: tuple, environment: str) -> None:
    for key in args:
        if key not in allowed:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", f"environment.args.{key}",
                                   f"is not an argument of {environment} (it takes {', '.join(allowed) or 'none'})")
