"""The built-in environments: reverse and arithmetic (procedural, graded exactly), gsm8k and math (datasets,
graded by math-verify)."""
from __future__ import annotations

import re
from typing import List, Optional

from .datasets import Row, load_rows
from .environment import Args, EnvironmentUnusable, Score, Task, int_arg, known_args, rng


class Reverse:
    """Reverse a short string. Dense reward (share of characters in the right place), so a tiny model learns it."""
    name, verifier_id = "reverse", "reverse/v1"

    def __init__(self, args: Args, seed: int):
        known_args(args, ("minLength", "maxLength", "alphabet"), self.name)
        self.min_length = int_arg(args, "minLength", 2, 1, 16)
        self.max_length = int_arg(args, "maxLength", 4, 1, 16)
        if self.min_length > self.max_length:
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.minLength",
                                   f"{self.min_length} is above environment.args.maxLength {self.max_length}")
        self.alphabet = str(args.get("alphabet", "abcd"))
        if not re.fullmatch(r"[a-z]{2,26}", self.alphabet):
            raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.args.alphabet",
                                   f"must be 2-26 lowercase letters, got {self.alphabet!r}")
        self.seed = seed

    def task(self, seq: int) -> Task:
        random = rng(self.seed, seq)
        length = self.min_length + int(random() * (self.max_length - self.min_length + 1))
        text = "".join(self.alphabet[int(random() * len(self.alphabet))] for _ in range(length))
        return Task(prompt=f"{text}=", answer=text[::-1])

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt=f"{answer[::-1]}=", answer=answer)

    def score(self, task: Task, completion: str) -> Score:
        return Score(positional_match(task.answer, completion))


def positional_match(target: str, completion: str) -> float:
    """Characters in the right place over the longer of the two lengths (0 for an empty completion)."""
    length = max(len(target), len(completion))
    if length == 0 or not completion:
        return 0.0
    return sum(a == b for a, b in zip(target, completion)) / length


class Arithmetic:
    """Small integer sums and differences; reward 1 for the exact answer, else 0."""
    name, verifier_id = "arithmetic", "arithmetic/v1"

    def __init__(self, args: Args, seed: int):
        known_args(args, ("maxOperand",), self.name)
        self.max_operand = int_arg(args, "maxOperand", 9, 1, 1_000_000)
        self.seed = seed

    def task(self, seq: int) -> Task:
        random = rng(self.seed, seq)
        a = int(random() * (self.max_operand + 1))
        b = int(random() * (self.max_operand + 1))
        plus = random() < 0.5
        return Task(prompt=f"{a}{'+' if plus else '-'}{b}=", answer=str(a + b if plus else a - b))

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt="", answer=answer)

    def score(self, task: Task, completion: str) -> Score:
        return Score(1.0 if completion.strip() == task.answer else 0.0)


def pick_row(rows: List[Row], seed: int, seq: int) -> Row:
    """Task seq → row: a seeded pick, so every process maps a seq to the same row."""
    if not rows:
        raise EnvironmentUnusable("InvalidEnvironmentArgs", "environment.dataset", "tasks by seq need a dataset")
    return rows[int(rng(seed, seq)() * len(rows))]


class Gsm8k:
    """Grade-school math: the reference answer follows `####`; graded by math-verify."""
    name, verifier_id = "gsm8k", "gsm8k/v2"

    def __init__(self, args: Args, seed: int, dataset: Optional[str], cache_dir: str, tasks: bool = True):
        known_args(args, (), self.name)
        # Without a dataset it still grades (answer, completion) pairs: `rlkube env score gsm8k FILE`.
        self.rows = load_rows(dataset, cache_dir, "gsm8k") if dataset is not None or tasks else []
        self.seed = seed

    def task(self, seq: int) -> Task:
        row = pick_row(self.rows, self.seed, seq)
        return Task(prompt=f"{row.question}\nAnswer:", answer=reference_of_solution(row.answer))

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt="", answer=reference_of_solution(answer))

    def score(self, task: Task, completion: str) -> Score:
        from .grading import grade
        return Score(grade(task.answer, completion))


def reference_of_solution(solution: str) -> str:
    """GSM8K's reference: what follows the last `####` (thousands separators dropped), or the whole text."""
    marker = solution.rfind("####")
    answer = solution[marker + 4:] if marker >= 0 else solution
    return re.sub(r"(\d),(?=\d{3}\b)", r"\1", answer.strip())


class Math:
    """Competition math (MATH-style rows: problem, solution with a \\boxed answer); graded by math-verify."""
    name, verifier_id = "math", "math/v2"

    def __init__(self, args: Args, seed: int, dataset: Optional[str], cache_dir: str, tasks: bool = True):
        known_args(args, (), self.name)
        # Without a dataset it still grades (answer, completion) pairs: `rlkube env score math FILE`.
        self.rows = load_rows(dataset, cache_dir, "math") if dataset is not None or tasks else []
        self.seed = seed

    def task(self, seq: int) -> Task:
        row = pick_row(self.rows, self.seed, seq)
        return Task(prompt=row.question, answer=row.answer)

    def task_of_answer(self, answer: str) -> Task:
        return Task(prompt="", answer=answer)

    def score(self, task: Task, completion: str) -> Score:
        from .grading import grade
        return Score(grade(task.answer, completion))
