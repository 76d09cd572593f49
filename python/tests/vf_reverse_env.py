"""A small environment module written to the `verifiers` interface (load_environment → an environment with a
dataset, a parser and a rubric), for the loader's tests and the `rlkube run` test: reverse a short word.
The real package is not installed here (see rlkube_env/plugins.py); this follows its documented shape."""
import itertools


class Parser:
    def parse_answer(self, completion):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        return text.strip()


class Rubric:
    def __init__(self, funcs, weights):
        self.funcs, self.weights = funcs, weights


class SingleTurnEnv:
    def __init__(self, dataset, rubric, parser, message_type="completion", system_prompt=None):
        self.dataset, self.rubric, self.parser = dataset, rubric, parser
        self.message_type, self.system_prompt = message_type, system_prompt


def load_environment(alphabet: str = "abc", length: int = 3, message_type: str = "completion"):
    words = ["".join(w) for w in itertools.product(alphabet, repeat=length)]
    dataset = [{"question": f"{w}=", "answer": w[::-1]} for w in words]

    def exact(completion, answer, parser):
        return 1.0 if parser.parse_answer(completion) == answer else 0.0

    async def in_place(completion, answer, parser, **kwargs):
        text = parser.parse_answer(completion)
        return sum(a == b for a, b in zip(text, answer, strict=False)) / max(len(text), len(answer), 1)

    return SingleTurnEnv(dataset, Rubric([exact, in_place], [0.5, 0.5]), Parser(), message_type=message_type)
