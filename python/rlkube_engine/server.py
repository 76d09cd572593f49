"""The Python engine server: the `tiny` engine (the built-in policy) and the `hf` engine (a Hugging Face model
through transformers, CPU or GPU). The subset of vLLM's OpenAI completions API the agent uses, plus loading
a policy version (a safetensors policy file: full weights or a LoRA adapter) by path and sha256 digest."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time

import torch

from rlkube_http import ApiError, announce_ready, make_server, req_int, req_number
from rlkube_policy import defaults
from rlkube_policy.model import TokenizerError, build_policy, sample
from rlkube_policy.weights import file_digest, read_policy, write_policy

MAX_N = 256


class Engine:
    """One policy version at a time; completions and weight loads are serialised by a lock, so a
    request is answered entirely by one version (agents swap versions between groups)."""

    def __init__(self, model: str = defaults.MODEL, seed: int = defaults.SEED, *, n_layer: int = defaults.N_LAYER,
                 d_model: int = defaults.D_MODEL, n_head: int = defaults.N_HEAD, max_len: int = defaults.MAX_LEN,
                 lora_rank: int = 0, lora_alpha: int = 0, init_weights: str = None, sample_seed: int = None,
                 device: str = None):
        self.model_name = model
        self.policy = build_policy(model, seed, n_layer=n_layer, d_model=d_model, n_head=n_head,
                                   max_len=max_len, lora_rank=lora_rank, lora_alpha=lora_alpha, device=device)
        self.lock = threading.Lock()
        self.sample_seed = seed if sample_seed is None else sample_seed
        self.generator = torch.Generator().manual_seed(self.sample_seed)
        self.ids = itertools.count()
        self.version = 0
        if init_weights:
            self.policy.load_policy_state(read_policy(init_weights)[0])
            self.digest = file_digest(init_weights)
        else:
            # the seeded init, written exactly as the trainer writes policy-v0: the same digest
            with tempfile.TemporaryDirectory() as d:
                self.digest = write_policy(os.path.join(d, "v0.safetensors"), self.policy.policy_state(),
                                           self.policy.kind, 0, self.policy.file_metadata())

    def info(self) -> dict:
        with self.lock:
            return {"version": self.version, "digest": self.digest}

    def _parse(self, body: dict) -> dict:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError("BadRequest", "prompt must be a string")
        r = {"model": body.get("model") or self.model_name,
             "n": req_int(body, "n", "", minimum=1, maximum=MAX_N, default=1),
             "max_tokens": req_int(body, "max_tokens", "", minimum=0, default=16),
             "temperature": req_number(body, "temperature", "", minimum=0.0, default=1.0),
             "want_lp": body.get("logprobs") is not None,
             "want_ids": bool(body.get("return_token_ids", False)),
             "seed": body.get("seed")}
        if r["want_lp"]:
            req_int(body, "logprobs", "", minimum=0, maximum=0)  # top-k alternatives are not served
        if r["seed"] is not None:
            req_int(body, "seed", "", minimum=0)
        try:
            r["prompt_ids"] = self.policy.encode_prompt(prompt)
        except TokenizerError as e:
            raise ApiError("InvalidPrompt", str(e)) from None
        if len(r["prompt_ids"]) + r["max_tokens"] > self.policy.max_len:
            raise ApiError("ContextLengthExceeded", f"prompt ({len(r['prompt_ids'])} tokens) + max_tokens "
                           f"({r['max_tokens']}) exceeds the model's max length {self.policy.max_len}")
        return r

    def complete(self, body: dict) -> dict:
        return self.complete_many([body])[0]

    def complete_many(self, bodies: list) -> list:
        """Several completion requests answered in one batched sampling run when they share n,
        max_tokens and temperature and carry no seed (as concurrent agent requests do), else one by one."""
        reqs = [self._parse(b) for b in bodies]
        key = lambda r: (r["n"], r["max_tokens"], r["temperature"])  # noqa: E731
        with self.lock:
            if len({key(r) for r in reqs}) == 1 and all(r["seed"] is None for r in reqs):
                r0 = reqs[0]
                outs = sample(self.policy, [r["prompt_ids"] for r in reqs], r0["n"], r0["max_tokens"],
                              r0["temperature"], self.generator)
                per = [outs[i * r0["n"]:(i + 1) * r0["n"]] for i in range(len(reqs))]
            else:
                per = []
                for r in reqs:
                    gen = torch.Generator().manual_seed(r["seed"]) if r["seed"] is not None else self.generator
                    per.append(sample(self.policy, [r["prompt_ids"]], r["n"], r["max_tokens"], r["temperature"], gen))
            policy = {"version": self.version, "digest": self.digest}
        return [self._response(r, o, policy) for r, o in zip(reqs, per, strict=True)]

    def _response(self, r: dict, outs: list, policy: dict) -> dict:
        choices = []
        for i, o in enumerate(outs):
            c = {"index": i, "text": self.policy.decode(o["token_ids"]), "finish_reason": o["finish_reason"],
                 "logprobs": None}
            if r["want_lp"]:
                c["logprobs"] = {"token_logprobs": o["logprobs"],
                                 "tokens": [self.policy.token_text(t) for t in o["token_ids"]]}
            if r["want_ids"]:
                c["token_ids"] = o["token_ids"]
                c["prompt_token_ids"] = r["prompt_ids"]
            choices.append(c)
        n_prompt, n_gen = len(r["prompt_ids"]), sum(len(o["token_ids"]) for o in outs)
        return {"id": f"cmpl-{next(self.ids)}", "object": "text_completion", "created": int(time.time()),
                "model": r["model"], "choices": choices,
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_gen, "total_tokens": n_prompt + n_gen},
                "policy": policy}

    def load_weights(self, body: dict) -> dict:
        path, digest = body.get("path"), body.get("digest")
        version = req_int(body, "version", "", minimum=0)
        if not isinstance(path, str) or not path:
            raise ApiError("BadRequest", "path must be a non-empty string")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise ApiError("BadRequest", "digest must be 'sha256:<hex>'")
        if not os.path.isfile(path):
            raise ApiError("WeightsNotFound", f"cannot read {path}")
        with self.lock:  # the agent writes each version to a file of its own and never rewrites it
            actual = file_digest(path)
            if actual != digest:
                raise ApiError("DigestMismatch", f"{path} has digest {actual}, not {digest}")
            try:
                state, meta = read_policy(path)
            except ValueError as e:
                raise ApiError("InvalidWeights", str(e)) from None
            cur = self.policy.policy_state()
            if meta.get("rlkube.kind") != self.policy.kind or set(state) != set(cur) or any(
                    state[k].shape != cur[k].shape for k in cur):
                raise ApiError("IncompatibleWeights", f"{path} does not fit this model ({self.model_name}, {self.policy.kind})")
            self.policy.load_policy_state(state)
            self.version, self.digest = version, digest
            return {"version": version, "digest": digest}


def make_engine_server(engine: Engine, host: str, port: int, verbose: bool = False):
    return make_server(host, port, {
        ("GET", "/health"): lambda _: {"ok": True},
        ("GET", "/v1/policy"): lambda _: engine.info(),
        ("GET", "/v1/models"): lambda _: {"object": "list", "data": [{"id": engine.model_name, "object": "model"}]},
        ("POST", "/v1/completions"): engine.complete,
        ("POST", "/v1/load_weights"): engine.load_weights,
    }, verbose=verbose)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rlkube_engine.server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (see the ready line)")
    p.add_argument("--model", default=defaults.MODEL, help="'tiny' or 'hf:<hub-id-or-folder>'")
    p.add_argument("--seed", type=int, default=defaults.SEED, help="init seed: the same as the trainer's")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="sampling RNG seed (default: random, so that the replicas of a pool do not sample alike)")
    p.add_argument("--n-layer", type=int, default=defaults.N_LAYER)
    p.add_argument("--d-model", type=int, default=defaults.D_MODEL)
    p.add_argument("--n-head", type=int, default=defaults.N_HEAD)
    p.add_argument("--max-len", type=int, default=defaults.MAX_LEN)
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--lora-alpha", type=int, default=0)
    p.add_argument("--init-weights", default=None, help="the trainer's --init-weights file, if it had one (version 0)")
    p.add_argument("--threads", type=int, default=defaults.THREADS, help="torch CPU threads")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        engine = Engine(a.model, a.seed, n_layer=a.n_layer, d_model=a.d_model, n_head=a.n_head, max_len=a.max_len,
                        lora_rank=a.lora_rank, lora_alpha=a.lora_alpha, init_weights=a.init_weights,
                        sample_seed=a.sample_seed if a.sample_seed is not None else int.from_bytes(os.urandom(4), "little"))
    except (ValueError, OSError, RuntimeError) as e:
        # one JSON line like every other log line (kubectl logs is read by machines too)
        print(json.dumps({"event": "start_failed", "reason": "StartFailed", "message": str(e)}), file=sys.stderr, flush=True)
        return 2
    server = make_engine_server(engine, a.host, a.port, a.verbose)
    announce_ready(role="engine", port=server.server_address[1], model=a.model, sample_seed=engine.sample_seed,
                   **engine.info())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
