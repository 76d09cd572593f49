"""The environment server (docs/contracts.md): GET /health, POST /task, POST /score. An environment that
cannot be made (bad args, a dataset that is not one) does not crash the process: /health answers 503 with the
reason and the field at fault, so an agent reports it and the pod does not crash-loop."""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
from functools import lru_cache
from typing import Callable, Optional

from rlkube_http import ApiError, announce_ready, make_server, req_int, req_list, serve_in_thread

from .environment import Environment, EnvironmentUnusable, Task
from .registry import create_environment

MAX_COMPLETIONS = 4096


class MainThread:
    """Runs environment calls one at a time on the main thread: math-verify's time limits are signal alarms,
    which work there only; the HTTP threads wait for their answer."""

    def __init__(self):
        self.calls: "queue.Queue" = queue.Queue()

    def call(self, fn: Callable, *args):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.calls.put((future, fn, args))
        return future.result()

    def run_forever(self) -> None:
        while True:
            try:
                # A bounded wait: the main thread comes back to Python often enough to act on SIGTERM.
                future, fn, args = self.calls.get(timeout=0.5)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except Exception as e:  # noqa: BLE001 - the caller's thread re-raises it
                future.set_exception(e)


def environment_routes(env: Optional[Environment], problem: Optional[EnvironmentUnusable], run: Callable):
    def usable() -> Environment:
        if env is None:
            raise ApiError(problem.reason, problem.message, 503)
        return env

    @lru_cache(maxsize=4096)
    def task(seq: int) -> Task:
        return usable().task(seq)

    def health(_body: dict) -> dict:
        e = usable()
        return {"status": "ok", "environment": e.name, "graderId": e.grader_id}

    def get_task(body: dict) -> dict:
        seq = req_int(body, "seq", "", minimum=0)
        return {"seq": seq, "prompt": run(task, seq).prompt}

    def score(body: dict) -> dict:
        e = usable()
        completions = req_list(body, "completions", "", nonempty=True)
        if len(completions) > MAX_COMPLETIONS or not all(isinstance(c, str) for c in completions):
            raise ApiError("BadRequest", f"completions must be 1-{MAX_COMPLETIONS} strings")
        if "answer" in body:
            if not isinstance(body["answer"], str):
                raise ApiError("BadRequest", "answer must be a string")
            the_task = run(e.task_of_answer, body["answer"])
        else:
            the_task = run(task, req_int(body, "seq", "", minimum=0))
        scores = [run(e.score, the_task, c) for c in completions]
        return {"graderId": e.grader_id, "rewards": [s.reward for s in scores], "details": [s.details for s in scores]}

    return {("GET", "/health"): health, ("POST", "/task"): get_task, ("POST", "/score"): score}


def open_environment(spec: dict, seed: int, cache_dir: str):
    try:
        return create_environment(spec, seed, cache_dir), None
    except EnvironmentUnusable as e:
        return None, e


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="rlkube environment server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8002)
    p.add_argument("--spec", required=True, help="the RLJob's spec.environment as JSON")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "rlkube", "datasets"))
    a = p.parse_args(argv)
    env, problem = open_environment(json.loads(a.spec), a.seed, a.cache_dir)
    runner = MainThread()
    server = make_server(a.host, a.port, environment_routes(env, problem, runner.call))
    serve_in_thread(server)
    if problem:
        print(json.dumps({"event": "unusable", **problem.to_json()}), flush=True)
    announce_ready(port=server.server_address[1], environment=env.name if env else None, graderId=env.grader_id if env else None)
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
