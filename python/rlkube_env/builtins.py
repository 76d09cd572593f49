"""The built-in environments: reverse and arithmetic (procedural, graded exactly), gsm8k and math (datasets,
graded by math-verify)."""
from __future__ import annotations

import re
from typing import List, Optional

from .datasets import Row, load_rows
from .environment import Args, EnvironmentUnusable, IntArg, NotAbove, Score, Signature, Task, TextArg, rng


class Reverse:
    """Reverse a short string. Dense reward (share of characters in the right place), so a tiny model learns it."""
    name, grader_id = "reverse", "reverse/v1"
    signature = Signature(
        args=(IntArg("minLength", "shortest string to reverse", 1, 16, default=2),
              IntArg("maxLength", "longest string to reverse", 1, 16, default=4),
              TextArg("alphabet", "the letters the strings are made of", "[a-z]{2,26}", "2-26 lowercase letters", default="abcd")),
        rules=(NotAbove("minLength", "maxLength"),))

    def __init__(self, args: Args, seed: int):
        values = self.signature.read(args, self.name)
        self.min_length, self.max_length, self.alphabet = values["minLength"], values["maxLength"], values["alphabet"]
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
    return sum(a == b for a, b in zip(target, completion, strict=False)) / length


class Arithmetic:
    """Small integer sums and differences; reward 1 for the exact answer, else 0."""
    name, grader_id = "arithmetic", "arithmetic/v1"
    signature = Signature(args=(IntArg("maxOperand", "largest operand", 1, 1_000_000, default=9),))

    def __init__(self, args: Args, seed: int):
        self.max_operand = self.signature.read(args, self.name)["maxOperand"]
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
    name, grader_id = "gsm8k", "gsm8k/v2"
    signature = Signature(dataset=True)

    def __init__(self, args: Args, seed: int, dataset: Optional[str], cache_dir: str, tasks: bool = True):
        self.signature.read(args, self.name)
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
    name, grader_id = "math", "math/v2"
    signature = Signature(dataset=True)

    def __init__(self, args: Args, seed: int, dataset: Optional[str], cache_dir: str, tasks: bool = True):
        self.signature.read(args, self.name)
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
