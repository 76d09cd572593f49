"""Shared test helpers: a batch of groups sampled by the engine, as the learner agent would post it."""
import copy

from rlkube_engine.server import Engine
from rlkube_trainer.trainer import Trainer, TrainerConfig

PROMPTS = ["ab=", "ca=", "dbc=", "abcd"]


def reward(i, n):
    # varies within every group (a random init rarely scores on a real task: all-equal rewards, no gradient)
    return i / n


def make_batch(engine: Engine, step: int, prompts=PROMPTS, n=4):
    groups = []
    # the job's temperature on both sides: log-probs are those of logits / temperature
    bodies = [{"prompt": s, "n": n, "max_tokens": 6, "temperature": TrainerConfig.temperature, "logprobs": 0,
               "return_token_ids": True} for s in prompts]
    for out in engine.complete_many(bodies):
        groups.append({
            "policy_version": out["policy"]["version"],
            "prompt_token_ids": out["choices"][0]["prompt_token_ids"],
            "completions": [{"token_ids": c["token_ids"], "logprobs": c["logprobs"]["token_logprobs"],
                             "reward": reward(i, n)} for i, c in enumerate(out["choices"])],
        })
    return {"step": step, "groups": groups}


def trainer(tmp_path, **kw):
    kw.setdefault("minibatches", 2)
    return Trainer(TrainerConfig(checkpoint_dir=str(tmp_path), seed=1, **kw))


def tampered(batch, group_index, delta):
    b = copy.deepcopy(batch)
    for c in b["groups"][group_index]["completions"]:
        c["logprobs"] = [lp + delta for lp in c["logprobs"]]
    return b
