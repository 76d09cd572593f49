"""Environments as a service (rlkube_env): tasks from (seed, seq), graders, datasets from files, URLs and the
hub, reasoning-gym and verifiers plug-ins, and the HTTP contract (docs/contracts.md)."""
import io
import json
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_servers import call

from rlkube_env.builtins import positional_match
from rlkube_env.cli import score_lines
from rlkube_env.datasets import load_rows, resolve_hf
from rlkube_env.environment import EnvironmentUnusable, IntArg
from rlkube_env.registry import ENVIRONMENTS, create_environment, describe
from rlkube_env.server import MainThread, environment_routes, open_environment
from rlkube_http import make_server, serve_in_thread

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
REVERSE = {"name": "reverse", "args": {"minLength": 2, "maxLength": 4, "alphabet": "abcd"}}


def make(spec, seed=1, cache_dir="/nonexistent", tasks=True):
    return create_environment(spec, seed, cache_dir, tasks)


def refused(spec, field, reason="InvalidEnvironmentArgs", cache_dir="/nonexistent"):
    with pytest.raises(EnvironmentUnusable) as e:
        make(spec, cache_dir=cache_dir)
    assert (e.value.reason, e.value.field) == (reason, field), e.value.message
    return e.value


class TestBuiltins:
    def test_reverse_tasks_are_the_typescript_generators_bit_for_bit(self):
        # Printed by the former TypeScript environments (mulberry32 of (seed, seq)) for seed 7 and 3.
        assert [make(REVERSE, 7).task(s).prompt for s in range(8)] == ["ba=", "ddd=", "dbb=", "bd=", "baa=", "dcbd=", "bacc=", "bba="]
        assert [make({"name": "arithmetic"}, 3).task(s).prompt for s in range(5)] == ["7+6=", "0-8=", "2+3=", "9-2=", "9-5="]

    def test_reverse_tasks_reverse_and_score_themselves(self):
        env = make(REVERSE, 7)
        for seq in range(200):
            task = env.task(seq)
            assert task.answer == task.prompt[:-1][::-1] and 2 <= len(task.answer) <= 4
            assert env.score(task, task.answer).reward == 1.0

    @pytest.mark.parametrize("target,completion,reward", [
        ("cba", "cba", 1), ("cba", "cbx", 2 / 3), ("cba", "cb", 2 / 3), ("cba", "cbaaa", 3 / 5), ("cba", "", 0), ("ab", "ba", 0)])
    def test_positional_match(self, target, completion, reward):
        assert positional_match(target, completion) == pytest.approx(reward)

    @pytest.mark.parametrize("args,field", [
        ({"minLength": 5, "maxLength": 3}, "environment.args.minLength"),
        ({"alphabet": ""}, "environment.args.alphabet"),
        ({"alphabet": "ABC"}, "environment.args.alphabet"),
        ({"maxLength": 0}, "environment.args.maxLength"),
        ({"maxLength": "x"}, "environment.args.maxLength"),
        ({"minLenght": 2}, "environment.args.minLenght"),
    ])
    def test_reverse_refuses_bad_args_naming_them(self, args, field):
        refused({"name": "reverse", "args": args}, field)

    def test_unknown_environment_and_a_dataset_where_none_is_taken(self):
        refused({"name": "chess"}, "environment.name", "UnknownEnvironment")
        refused({"name": "reverse", "dataset": "x.jsonl"}, "environment.dataset")

    def test_arithmetic_is_exact(self):
        env = make({"name": "arithmetic"}, 3)
        task = env.task(5)
        assert env.score(task, f" {task.answer} ").reward == 1.0
        assert env.score(task, task.answer + "1").reward == 0.0

    @pytest.mark.parametrize("solution,completion,reward", [
        ("#### 1/2", "so it is 1/2", 1.0),
        ("#### 2", "#### 1/2", 0.0),           # the last-number rule took the 2 of 1/2
        ("#### 1,234", "The total is 1,234 dollars.", 1.0),
        ("#### 0.5", "\\boxed{\\frac12}", 1.0),
        ("#### 7", "The answer is 8.", 0.0),
    ])
    def test_gsm8k_grades_with_math_verify(self, solution, completion, reward):
        env = make({"name": "gsm8k"}, tasks=False)
        assert env.score(env.task_of_answer(solution), completion).reward == reward

    @pytest.mark.parametrize("gold,completion,reward", [
        ("\\frac12", "\\boxed{0.5}", 1.0), ("2\\sqrt3", "\\boxed{\\sqrt{12}}", 1.0), ("\\{1,2\\}", "$\\{2,1\\}$", 1.0),
        ("56", "5\\text{ and }6", 0.0),        # \text{} stripping made this 56
        ("7", "The answer is 7.", 1.0), ("7", "\\boxed{8}", 0.0),
    ])
    def test_math_grades_with_math_verify(self, gold, completion, reward):
        env = make({"name": "math"}, tasks=False)
        assert env.score(env.task_of_answer(gold), completion).reward == reward

    def test_dataset_environments_need_a_dataset_for_tasks(self):
        refused({"name": "gsm8k"}, "environment.dataset")


class TestCatalogue:
    """The signatures the environments read their args through are the catalogue the TypeScript checks read."""

    def test_it_lists_every_environment_with_its_signature(self):
        catalogue = describe()["environments"]
        assert [e["name"] for e in catalogue] == ["reverse", "arithmetic", "gsm8k", "math", "reasoning-gym", "verifiers"]
        reverse = catalogue[0]
        assert reverse["args"]["properties"]["minLength"] == {
            "type": "integer", "description": "shortest string to reverse", "minimum": 1, "maximum": 16, "default": 2}
        assert reverse["rules"] == [{"rule": "notAbove", "arg": "minLength", "limit": "maxLength"}]
        assert [e["dataset"] for e in catalogue] == ["none", "none", "required", "required", "none", "none"]
        assert {e["name"]: e["args"]["required"] for e in catalogue if e["args"]["additionalProperties"]} == {
            "reasoning-gym": ["task"], "verifiers": ["module"]}

    @pytest.mark.parametrize("environment,arg", [
        (cls, arg) for cls in ENVIRONMENTS.values() for arg in cls.signature.args if isinstance(arg, IntArg)])
    def test_integer_bounds_are_the_ones_read(self, environment, arg):
        for inside in (arg.minimum, arg.maximum, str(arg.maximum), float(arg.minimum)):
            assert arg.minimum <= arg.read(inside) <= arg.maximum
        for outside in (arg.minimum - 1, arg.maximum + 1, arg.minimum + 0.5, "1e2", " 3", True, None):
            with pytest.raises(EnvironmentUnusable) as e:
                arg.read(outside)
            assert e.value.field == f"environment.args.{arg.name}" and "must be an integer in" in e.value.message
        required = {a.name: "x" for a in environment.signature.args if a.default is None}
        assert environment.signature.read(required, environment.name)[arg.name] == arg.default

    def test_a_missing_required_arg_and_a_value_of_the_wrong_type_are_named(self):
        e = refused({"name": "verifiers", "args": {"message_type": "chat"}}, "environment.args.module")
        assert e.message == "environment.args.module: is required: a Python module name (e.g. vf_reverse_env)"
        e = refused({"name": "reverse", "args": {"alphabet": 12}}, "environment.args.alphabet")
        assert e.message == "environment.args.alphabet: must be 2-26 lowercase letters, got 12"
        e = refused({"name": "arithmetic", "args": {"minOperand": 1}}, "environment.args.minOperand")
        assert e.message == "environment.args.minOperand: is not an argument of arithmetic (it takes maxOperand)"

    def test_describe_prints_the_catalogue(self):
        result = subprocess.run([sys.executable, "-m", "rlkube_env.cli", "describe"], capture_output=True, text=True, check=True)
        assert json.loads(result.stdout) == describe()


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)


GSM_ROWS = [{"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}, {"question": "What is 3+3?", "answer": "#### 6"}]


@pytest.fixture
def web(tmp_path):
    """A loopback web server for tmp_path/www, counting requests per path."""
    root = tmp_path / "www"
    root.mkdir()
    hits = {}

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            super().do_GET()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


class TestDatasets:
    def test_local_jsonl_and_parquet(self, tmp_path):
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM_ROWS))
        write_parquet(tmp_path / "d.parquet", [{"problem": "1+1?", "solution": "\\boxed{2}"}])
        assert [r.question for r in load_rows(str(tmp_path / "d.jsonl"), "/x", "gsm8k")] == ["What is 2+2?", "What is 3+3?"]
        assert load_rows(str(tmp_path / "d.parquet"), "/x", "math")[0].answer == "\\boxed{2}"
        env = make({"name": "gsm8k", "dataset": str(tmp_path / "d.parquet" if False else tmp_path / "d.jsonl")})
        task = env.task(0)
        assert task.prompt.endswith("\nAnswer:") and env.score(task, f"it is {task.answer}").reward == 1.0

    @pytest.mark.parametrize("content,words", [
        (b"not json\n", "line 1 is not JSON"),
        (b'{"question": 1, "answer": "x"}\n', "row 1 needs string question/answer"),
        (b"PAR1 but not parquet", "not a readable Parquet file"),
        (b"", "has no rows"),
    ])
    def test_a_file_that_is_not_a_dataset_is_named(self, tmp_path, content, words):
        (tmp_path / "bad").write_bytes(content)
        e = refused({"name": "gsm8k", "dataset": str(tmp_path / "bad")}, "environment.dataset", "DatasetUnreadable")
        assert words in e.message

    def test_missing_file_and_unknown_scheme(self, tmp_path):
        refused({"name": "math", "dataset": str(tmp_path / "none.jsonl")}, "environment.dataset", "DatasetUnreadable")
        refused({"name": "math", "dataset": "s3://bucket/x.parquet"}, "environment.dataset", "DatasetUnreadable")

    def test_the_gsm8k_example_dataset_line_over_http_downloaded_once(self, tmp_path, web):
        root, base, hits = web
        with open(os.path.join(REPO, "examples", "gsm8k-gpu.yaml")) as f:
            url = yaml.safe_load(f)["spec"]["environment"]["dataset"]
        # The example's URL as written, its host pointed at the loopback server.
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        (root / path.lstrip("/")).parent.mkdir(parents=True)
        write_parquet(root / path.lstrip("/"), GSM_ROWS)
        spec = {"name": "gsm8k", "dataset": base + path}
        cache = str(tmp_path / "cache")
        env = make(spec, cache_dir=cache)
        assert env.task(0).prompt.startswith("What is") and env.score(env.task(1), "#### " + env.task(1).answer).reward == 1.0
        make(spec, cache_dir=cache)
        assert hits[path] == 1
        refused({"name": "gsm8k", "dataset": base + "/missing.parquet"}, "environment.dataset", "DatasetUnreadable", cache_dir=cache)

    @pytest.mark.parametrize("dataset,expected", [
        ("hf:openai/gsm8k", ("openai/gsm8k", "default", "train")),
        ("hf:openai/gsm8k:main", ("openai/gsm8k", "main", "train")),
        ("hf:openai/gsm8k:main:test", ("openai/gsm8k", "main", "test")),
    ])
    def test_hub_ids_resolve(self, dataset, expected):
        hub = resolve_hf(dataset, {"HF_TOKEN": "secret"})
        assert (hub.repo, hub.config, hub.split) == expected
        assert hub.api_url == f"https://huggingface.co/api/datasets/{expected[0]}/parquet/{expected[1]}/{expected[2]}"
        assert hub.headers_for("https://huggingface.co/x") == {"Authorization": "Bearer secret"}
        assert hub.headers_for("https://elsewhere.example/x") == {}
        assert resolve_hf(dataset, {}).headers_for(hub.api_url) == {}

    @pytest.mark.parametrize("dataset", ["hf:gsm8k", "hf:a/b/c", "hf:", "hf:a/b:c:d:e", "hf:a/:x"])
    def test_bad_hub_ids_are_named(self, dataset):
        with pytest.raises(EnvironmentUnusable) as e:
            resolve_hf(dataset, {})
        assert e.value.field == "environment.dataset"

    def test_a_hub_dataset_through_its_parquet_listing(self, tmp_path, web, monkeypatch):
        root, base, _ = web
        listing = root / "api" / "datasets" / "me" / "tiny" / "parquet" / "main"
        listing.mkdir(parents=True)
        write_parquet(root / "part-0.parquet", GSM_ROWS[:1])
        write_parquet(root / "part-1.parquet", GSM_ROWS[1:])
        (listing / "train").write_text(json.dumps([f"{base}/part-0.parquet", f"{base}/part-1.parquet"]))
        monkeypatch.setenv("HF_ENDPOINT", base)
        rows = load_rows("hf:me/tiny:main", str(tmp_path / "cache"), "gsm8k")
        assert [r.question for r in rows] == ["What is 2+2?", "What is 3+3?"]


class TestPlugins:
    def test_a_reasoning_gym_task_by_name(self):
        spec = {"name": "reasoning-gym", "args": {"task": "number_sequence", "min_terms": 4, "max_terms": 5, "max_value": 20}}
        env, again = make(spec, 3), make(spec, 3)
        task = env.task(11)
        assert again.task(11).prompt == task.prompt and task.prompt.endswith("?")
        assert env.score(task, task.answer).reward == 1.0
        assert env.score(task, f"<answer>{task.answer}</answer>").reward == 1.0
        assert env.score(task, "nonsense").reward == 0.0
        assert env.grader_id.startswith("reasoning-gym/number_sequence/")

    def test_reasoning_gym_refusals_name_the_field(self):
        refused({"name": "reasoning-gym", "args": {"task": "no_such_task"}}, "environment.args.task")
        refused({"name": "reasoning-gym"}, "environment.args.task")
        refused({"name": "reasoning-gym", "args": {"task": "number_sequence", "bogus": 1}}, "environment.args")

    @pytest.mark.parametrize("message_type", ["completion", "chat"])
    def test_a_verifiers_module_by_name(self, message_type):
        env = make({"name": "verifiers", "args": {"module": "vf_reverse_env", "message_type": message_type}}, 2)
        task = env.task(4)
        assert task.prompt.endswith("=") and len(task.prompt) == 4
        right = env.score(task, task.answer)
        assert right.reward == 1.0 and right.details == {"exact": 1.0, "in_place": 1.0}
        assert env.score(task, task.answer[:2] + "x").reward == pytest.approx(0.5 * 2 / 3)
        assert env.grader_id == "verifiers/vf_reverse_env"

    def test_verifiers_refusals_name_the_field(self):
        refused({"name": "verifiers", "args": {"module": "no_such_module_here"}}, "environment.args.module")
        refused({"name": "verifiers", "args": {"module": "json"}}, "environment.args.module")
        refused({"name": "verifiers", "args": {"module": "vf_reverse_env", "nope": 1}}, "environment.args")


@pytest.fixture
def env_server():
    started = []

    def start(spec, seed=1):
        env, problem = open_environment(spec, seed, "/nonexistent")
        runner = MainThread()
        threading.Thread(target=runner.run_forever, daemon=True).start()
        server = make_server("127.0.0.1", 0, environment_routes(env, problem, runner.call))
        serve_in_thread(server)
        started.append(server)
        return server.server_address[1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


class TestServer:
    def test_task_and_score_by_seq_and_by_answer(self, env_server):
        port = env_server(REVERSE, 7)
        assert call(port, "GET", "/health") == (200, {"status": "ok", "environment": "reverse", "graderId": "reverse/v1"})
        status, task = call(port, "POST", "/task", {"seq": 1})
        assert (status, task) == (200, {"seq": 1, "prompt": "ddd="})
        status, scored = call(port, "POST", "/score", {"seq": 1, "completions": ["ddd", "dd", "abc"]})
        assert status == 200 and scored["rewards"] == [1.0, pytest.approx(2 / 3), 0.0] and scored["graderId"] == "reverse/v1"
        assert call(port, "POST", "/score", {"answer": "cba", "completions": ["cba"]})[1]["rewards"] == [1.0]

    @pytest.mark.parametrize("body", [
        {"seq": -1, "completions": ["a"]}, {"seq": 1}, {"seq": 1, "completions": [3]}, {"answer": 3, "completions": ["a"]}])
    def test_bad_requests_are_refused(self, env_server, body):
        status, error = call(env_server(REVERSE), "POST", "/score", body)
        assert status == 400 and error["reason"] == "BadRequest"

    def test_an_unusable_environment_answers_with_its_reason(self, env_server):
        port = env_server({"name": "reverse", "args": {"minLength": 5, "maxLength": 2}})
        status, error = call(port, "GET", "/health")
        assert status == 503 and error["reason"] == "InvalidEnvironmentArgs" and error["message"].startswith("environment.args.minLength")
        assert call(port, "POST", "/task", {"seq": 0})[0] == 503

    def test_the_server_process_grades_with_math_verify_and_stops_on_sigterm(self, tmp_path):
        # math-verify's time limits are signal alarms: graded from an HTTP thread it would refuse (the process
        # grades on its main thread).
        (tmp_path / "m.jsonl").write_text(json.dumps({"problem": "Half of 1?", "solution": "It is \\boxed{\\frac12}."}) + "\n")
        spec = {"name": "math", "dataset": str(tmp_path / "m.jsonl")}
        proc = subprocess.Popen([sys.executable, "-m", "rlkube_env.server", "--port", "0", "--spec", json.dumps(spec)],
                                stdout=subprocess.PIPE, text=True)
        try:
            ready = json.loads(proc.stdout.readline())
            assert ready["event"] == "ready" and ready["graderId"] == "math/v2"
            port = ready["port"]
            assert call(port, "POST", "/task", {"seq": 0}) == (200, {"seq": 0, "prompt": "Half of 1?"})
            assert call(port, "POST", "/score", {"seq": 0, "completions": ["\\boxed{0.5}", "\\boxed{2}"]})[1]["rewards"] == [1.0, 0.0]
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0


class TestCli:
    def test_score_lines_by_answer_and_by_seq(self):
        out = io.StringIO()
        lines = ['{"answer": "cba", "completion": "cba"}', "", '{"seq": 1, "completion": "ddd"}', '{"completion": "x"}', "nope"]
        assert score_lines(make(REVERSE, 7), lines, out) == 2
        results = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [r.get("reward") for r in results] == [1.0, 1.0, None, None]
        assert [r["line"] for r in results] == [1, 3, 4, 5]

    def test_check_exits_3_naming_the_field(self):
        spec = json.dumps({"name": "reverse", "args": {"alphabet": ""}})
        result = subprocess.run([sys.executable, "-m", "rlkube_env.cli", "check", "--spec", spec],
                                capture_output=True, text=True)
        assert result.returncode == 3
        assert json.loads(result.stdout)["field"] == "environment.args.alphabet"
