"""Environment spec (the RLJob's spec.environment: name, args, dataset) → environment."""
from __future__ import annotations

from typing import Any, Dict

from .builtins import Arithmetic, Gsm8k, Math, Reverse
from .environment import Environment, EnvironmentUnusable
from .plugins import ReasoningGym, Verifiers

PROCEDURAL = {"reverse": Reverse, "arithmetic": Arithmetic, "reasoning-gym": ReasoningGym, "verifiers": Verifiers}
FROM_DATASET = {"gsm8k": Gsm8k, "math": Math}
NAMES = sorted([*PROCEDURAL, *FROM_DATASET])


def create_environment(spec: Dict[str, Any], seed: int, cache_dir: str, tasks: bool = True) -> Environment:
    """tasks=False: only grading (answer, completion) pairs is wanted, so a dataset environment needs no dataset."""
    name = spec.get("name")
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args", "must be a map of names to strings or numbers")
    dataset = spec.get("dataset")
    if name in FROM_DATASET:
        return FROM_DATASET[name](args, seed, dataset, cache_dir, tasks)
    if name in PROCEDURAL:
        if dataset is not None:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.dataset", f"environment {name} takes no dataset")
        return PROCEDURAL[name](args, seed)
    raise EnvironmentUnusable("UnknownEnvironment", "environment.name", f"{name!r} is not one of {', '.join(NAMES)}")
