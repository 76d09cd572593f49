"""Environments from the Python ecosystem: any reasoning-gym task by name, and Prime Intellect `verifiers`
environment modules (`load_environment(**kwargs)`)."""
from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Dict

from .environment import Args, EnvironmentUnusable, IntArg, Score, Signature, Task, TextArg

DATASET_SIZE = 1_000_000


class ReasoningGym:
    """reasoning-gym's procedural task `args.task`; the other args are the task's config (min_terms, ...).
    Task seq is the dataset's item seq mod `args.size`; graded by the task's own score_answer, on the text in
    <answer>...</answer> when the completion has one, else on the whole completion."""
    name = "reasoning-gym"
    signature = Signature(
        args=(TextArg("task", "the reasoning-gym task", "[a-z][a-z0-9_]*", "a reasoning-gym task name (e.g. leg_counting)"),
              IntArg("size", "how many distinct tasks before seq wraps around", 1, 2**31 - 1, default=DATASET_SIZE)),
        more_args="the task's own config (e.g. min_terms, max_terms), checked by reasoning-gym when the environment is made")

    def __init__(self, args: Args, seed: int):
        config = self.signature.read(args, self.name)
        task, size = config.pop("task"), config.pop("size")
        try:
            import reasoning_gym
            from reasoning_gym.factory import DATASETS
        except ImportError as e:
            raise EnvironmentUnusable("PluginUnavailable", "environment.name",
                                      f"reasoning-gym is not installed in this image ({e})") from None
        if task not in DATASETS:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.task",
                                   f"{task!r} is not a reasoning-gym task (known: {', '.join(sorted(DATASETS))})")
        try:
            self.dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **config)
        except (TypeError, ValueError, AssertionError) as e:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args",
                                   f"reasoning-gym task {task} refuses its config {config}: {type(e).__name__} {e}".rstrip()) from None
        self.grader_id = f"reasoning-gym/{task}/{_version('reasoning-gym')}"

    def task(self, seq: int) -> Task:
        entry = self.dataset[seq % len(self.dataset)]
        return Task(prompt=entry["question"], answer=str(entry["answer"]), entry=entry)

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt="", answer=answer, entry={"question": "", "answer": answer, "metadata": {}})

    def score(self, task: Task, completion: str) -> Score:
        match = re.search(r"<answer>(.*?)</answer>", completion, re.DOTALL)
        answer = (match.group(1) if match else completion).strip()
        return Score(_unit(self.dataset.score_answer(answer=answer, entry=task.entry)))


class Verifiers:
    """A Prime Intellect `verifiers` environment module (`args.module`); the other args are its load_environment()'s.
    Written to the interface Prime Intellect documents for its environments: `load_environment(**kwargs)` returns
    an environment with
      dataset   rows with `question` (or a `prompt` string / chat messages) and `answer`, optionally `info`, `task`
      rubric    reward functions `funcs` (or `reward_funcs`) with `weights` (or `reward_weights`); each called with
                whichever of completion, answer, prompt, info, task, state, parser it takes; sync or async
      parser    optional, handed to the reward functions
      message_type  'chat' (completions handed over as [{"role": "assistant", ...}]) or 'completion' (text)
    The package itself is not installed here (its dependencies are large); an image that has it loads its
    environments by the same interface."""
    name = "verifiers"
    signature = Signature(
        args=(TextArg("module", "the Python module with load_environment()", "[A-Za-z_][A-Za-z0-9_.-]*",
                      "a Python module name (e.g. vf_reverse_env)"),),
        more_args="keyword arguments of the module's load_environment(), checked by it when the environment is made")

    def __init__(self, args: Args, seed: int):
        kwargs = self.signature.read(args, self.name)
        module_name = kwargs.pop("module")
        try:
            module = importlib.import_module(module_name.replace("-", "_"))
        except ImportError as e:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.module", f"cannot import {module_name}: {e}") from None
        load = getattr(module, "load_environment", None)
        if not callable(load):
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.module", f"{module_name} has no load_environment()")
        try:
            self.env = load(**kwargs)
        except TypeError as e:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args",
                                      f"{module_name}.load_environment refuses {kwargs}: {e}") from None
        self.rows = self.env.dataset
        if self.rows is None or len(self.rows) == 0:
            raise EnvironmentUnusable("DatasetUnreadable", "environment.args.module", f"{module_name}'s environment has an empty dataset")
        rubric = self.env.rubric
        self.funcs = list(getattr(rubric, "funcs", None) or getattr(rubric, "reward_funcs", None) or [])
        weights = getattr(rubric, "weights", None) or getattr(rubric, "reward_weights", None)
        self.weights = list(weights) if weights else [1.0] * len(self.funcs)
        if not self.funcs or len(self.weights) != len(self.funcs):
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.module",
                                      f"{module_name}'s rubric has no reward functions (or a weight missing)")
        self.chat = getattr(self.env, "message_type", "completion") == "chat"
        self.seed = seed
        self.grader_id = f"verifiers/{module_name}"

    def task(self, seq: int) -> Task:
        from .environment import rng
        row = dict(self.rows[int(rng(self.seed, seq)() * len(self.rows))])
        return Task(prompt=_prompt_text(row, getattr(self.env, "system_prompt", None)), answer=str(row.get("answer", "")), entry=row)

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt="", answer=answer, entry={"answer": answer})

    def score(self, task: Task, completion: str) -> Score:
        row = task.entry or {}
        values = {
            "completion": [{"role": "assistant", "content": completion}] if self.chat else completion,
            "answer": task.answer, "prompt": row.get("prompt", task.prompt), "info": row.get("info", {}),
            "task": row.get("task", "default"), "state": {}, "parser": getattr(self.env, "parser", None),
        }
        details: Dict[str, Any] = {}
        total = 0.0
        for func, weight in zip(self.funcs, self.weights, strict=True):
            params = inspect.signature(func).parameters
            takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
            value = func(**{k: v for k, v in values.items() if takes_all or k in params})
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            details[getattr(func, "__name__", "reward")] = float(value)
            total += float(weight) * float(value)
        return Score(_unit(total), details)


async def _awaited(value):
    return await value


def _prompt_text(row: Dict[str, Any], system_prompt: Any) -> str:
    """The text an engine completes: a string prompt or question as is, chat messages one per line."""
    prompt = row.get("prompt", row.get("question"))
    if isinstance(prompt, list):
        text = "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
    else:
        text = str(prompt or "")
    return f"{system_prompt}\n\n{text}" if isinstance(system_prompt, str) and system_prompt and "prompt" not in row else text


def _unit(value: Any) -> float:
    reward = float(value or 0.0)
    return 0.0 if reward != reward else min(1.0, max(0.0, reward))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
