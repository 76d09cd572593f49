"""`python -m rlkube_env.cli check|score|describe`: what `rlkube run` and `rlkube env score` run.
check: makes the environment (dataset downloaded, args checked); exit 0 and {"graderId": ...}, or exit 3 and
{"reason", "field", "message"}. score FILE.jsonl: one JSON line per input line {"answer"|"seq", "completion"}.
describe: the environment catalogue as JSON (api/generated/environments.json is its committed copy)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .environment import EnvironmentUnusable
from .registry import create_environment, describe

UNUSABLE = 3


def score_lines(env, lines, out) -> int:
    """Writes {"line", "reward", "details"} (or {"line", "error"}) per non-empty line; returns how many failed."""
    failed = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            completion = record["completion"]
            if not isinstance(completion, str):
                raise ValueError("completion must be a string")
            if "answer" in record:
                task = env.task_of_answer(str(record["answer"]))
            elif isinstance(record.get("seq"), int) and record["seq"] >= 0:
                task = env.task(record["seq"])
            else:
                raise ValueError('needs "answer" (a string) or "seq" (an integer >= 0)')
            score = env.score(task, completion)
            result = {"line": number, "reward": score.reward, **({"details": score.details} if score.details else {})}
        except EnvironmentUnusable as e:
            failed += 1
            result = {"line": number, "error": e.message}
        except (ValueError, KeyError, TypeError) as e:
            failed += 1
            result = {"line": number, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(result) + "\n")
    return failed


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="rlkube environments: check a spec, score completions, describe them all")
    p.add_argument("command", choices=["check", "score", "describe"])
    p.add_argument("file", nargs="?", help="score: a JSONL file of {answer|seq, completion} (- for stdin)")
    p.add_argument("--spec", help="check, score: spec.environment as JSON")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "rlkube", "datasets"))
    a = p.parse_intermixed_args(argv)
    if a.command == "describe":
        print(json.dumps(describe(), indent=2))
        return
    if a.spec is None:
        p.error(f"{a.command} needs --spec")
    try:
        env = create_environment(json.loads(a.spec), a.seed, a.cache_dir, tasks=a.command == "check")
    except EnvironmentUnusable as e:
        print(json.dumps(e.to_json()), flush=True)
        sys.exit(UNUSABLE)
    if a.command == "check":
        print(json.dumps({"environment": env.name, "graderId": env.grader_id}), flush=True)
        return
    if not a.file:
        p.error("score needs a FILE.jsonl")
    with (sys.stdin if a.file == "-" else open(a.file, encoding="utf8")) as f:
        failed = score_lines(env, f, sys.stdout)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
