"""The HTTP APIs of the policy server and the trainer (docs/contracts.md), in-process and as a process."""
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from helpers import make_batch, trainer

from rlkube_engine.server import Engine, make_engine_server
from rlkube_http import serve_in_thread
from rlkube_trainer.server import make_trainer_server


def call(port, method, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def engine_port():
    server = make_engine_server(Engine(seed=1), "127.0.0.1", 0)
    serve_in_thread(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def trainer_port(tmp_path):
    server = make_trainer_server(trainer(tmp_path), "127.0.0.1", 0)
    serve_in_thread(server)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_engine_completions(engine_port):
    assert call(engine_port, "GET", "/health") == (200, {"ok": True})
    status, out = call(engine_port, "POST", "/v1/completions", {
        "model": "tiny", "prompt": "abc=", "n": 3, "max_tokens": 8, "temperature": 1.0, "logprobs": 0,
        "return_token_ids": True})
    assert status == 200 and out["object"] == "text_completion" and len(out["choices"]) == 3
    for i, c in enumerate(out["choices"]):
        assert c["index"] == i and c["prompt_token_ids"] == [1, 22, 23, 24, 18]
        assert len(c["token_ids"]) == len(c["logprobs"]["token_logprobs"]) <= 8
        assert c["finish_reason"] in ("stop", "length")
    # without logprobs/return_token_ids: vLLM's shape, no extra fields
    _, plain = call(engine_port, "POST", "/v1/completions", {"prompt": "ab=", "max_tokens": 4})
    assert plain["choices"][0]["logprobs"] is None and "token_ids" not in plain["choices"][0]
    # a seed makes a request reproducible
    seeded = {"prompt": "ab=", "n": 4, "max_tokens": 8, "seed": 7, "return_token_ids": True}
    assert [c["token_ids"] for c in call(engine_port, "POST", "/v1/completions", seeded)[1]["choices"]] == \
        [c["token_ids"] for c in call(engine_port, "POST", "/v1/completions", seeded)[1]["choices"]]


@pytest.mark.parametrize("body,reason", [
    ({"prompt": "ABC="}, "InvalidPrompt"),
    ({"prompt": "ab=", "max_tokens": 40}, "ContextLengthExceeded"),
    ({"prompt": "ab=", "n": 0}, "BadRequest"),
    ({"prompt": 5}, "BadRequest"),
    ({"prompt": "ab=", "temperature": -1}, "BadRequest"),
])
def test_engine_refuses_bad_requests(engine_port, body, reason):
    status, out = call(engine_port, "POST", "/v1/completions", body)
    assert status == 400 and out["reason"] == reason and out["message"]


def test_engine_load_weights_checks_the_digest(engine_port, tmp_path):
    t = trainer(tmp_path)
    res = t.train_step(make_batch(Engine(seed=1), 0))
    _, before = call(engine_port, "GET", "/v1/policy")
    assert before == {"version": 0, "digest": Engine(seed=1).info()["digest"]}
    bad = "sha256:" + "0" * 64
    status, out = call(engine_port, "POST", "/v1/load_weights", {"path": res["weights_path"], "version": 1, "digest": bad})
    assert status == 400 and out["reason"] == "DigestMismatch"
    assert call(engine_port, "GET", "/v1/policy")[1] == before  # nothing loaded
    status, out = call(engine_port, "POST", "/v1/load_weights", {"path": str(tmp_path / "nope.pt"), "version": 1, "digest": bad})
    assert status == 400 and out["reason"] == "WeightsNotFound"
    ok = {"path": res["weights_path"], "version": 1, "digest": res["digest"]}
    assert call(engine_port, "POST", "/v1/load_weights", ok) == (200, {"version": 1, "digest": res["digest"]})
    assert call(engine_port, "GET", "/v1/policy")[1] == {"version": 1, "digest": res["digest"]}
    _, out = call(engine_port, "POST", "/v1/completions", {"prompt": "ab=", "max_tokens": 4})
    assert out["policy"] == {"version": 1, "digest": res["digest"]}


def test_trainer_http_step_retry_and_refusals(trainer_port):
    assert call(trainer_port, "GET", "/health") == (200, {"ok": True})
    status, st = call(trainer_port, "GET", "/v1/state")
    assert status == 200 and st["step"] == 0 and st["version"] == 0 and st["vocab_size"] == 48  # 3 specials + 45 characters
    batch = make_batch(Engine(seed=1), 0)
    status, res = call(trainer_port, "POST", "/v1/train_step", batch)
    assert status == 200 and res["version"] == 1 and res["digest"].startswith("sha256:")
    assert call(trainer_port, "POST", "/v1/train_step", batch) == (200, {**res, "replayed": True})
    assert call(trainer_port, "POST", "/v1/train_step", raw=b"{not json")[1]["reason"] == "InvalidJson"
    status, out = call(trainer_port, "POST", "/v1/train_step", {"step": 1})
    assert status == 400 and out["reason"] == "BadRequest"
    assert call(trainer_port, "GET", "/v1/nope")[0] == 404
    assert call(trainer_port, "GET", "/v1/state")[1]["version"] == 1


def test_servers_announce_ready_as_processes(tmp_path):
    cmds = [
        [sys.executable, "-m", "rlkube_trainer.server", "--port", "0", "--model", "tiny", "--checkpoint-dir",
         str(tmp_path), "--lr", "3e-3", "--temperature", "1.0", "--clip-low", "0.2", "--clip-high", "0.28",
         "--kl-coef", "0", "--is-cap", "2", "--logprob-tolerance", "0.1", "--sampled-positions", "32", "--seed", "1"],
        [sys.executable, "-m", "rlkube_engine.server", "--port", "0", "--model", "tiny", "--seed", "1"],
    ]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    try:
        ready = [json.loads(p.stdout.readline()) for p in procs]
        assert [r["event"] for r in ready] == ["ready", "ready"]
        assert [r["role"] for r in ready] == ["trainer", "engine"]
        assert ready[0]["digest"] == ready[1]["digest"] and ready[0]["version"] == ready[1]["version"] == 0
        for r in ready:
            assert call(r["port"], "GET", "/health") == (200, {"ok": True})
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=120)
    # SIGTERM ends each server cleanly through its handler (killed by the signal, it would be -15): as a pod's
    # stop must, where PID 1 has no default action
    assert [p.returncode for p in procs] == [0, 0]
