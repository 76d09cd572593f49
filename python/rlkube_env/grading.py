"""Mathematical answers graded by math-verify (HF), called one way everywhere: the reference answer in $...$
unless it carries its own delimiters or \\boxed, the completion parsed with math-verify's defaults (a \\boxed
answer first, else the last LaTeX or plain expression). Runs on the main thread: math-verify's timeouts are
signal alarms."""
from __future__ import annotations


def parse_reference(answer: str):
    from math_verify import parse
    text = answer.strip()
    gold = parse(text if ("$" in text or "\\boxed" in text) else f"${text}$")
    return gold or parse(text)


def grade(answer: str, completion: str) -> float:
    """1.0 if math-verify finds the completion's answer equal to the reference answer, else 0.0."""
    from math_verify import parse, verify
    gold = parse_reference(answer)
    predicted = parse(completion)
    return 1.0 if gold and predicted and verify(gold, predicted) else 0.0
