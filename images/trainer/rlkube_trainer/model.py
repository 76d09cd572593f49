"""Policies (the built-in tiny char transformer, or a Hugging Face model), batched sampling and log-probs.

Both the policy server (sampling) and the trainer (re-computing log-probs) go through `token_log_probs`,
so the behavior log-probs a worker reports and the trainer's log-probs are the same quantity:

    log-prob of a token = log_softmax(logits / temperature)[token], over the vocabulary minus the
    policy's banned ids (PAD and BOS for the tiny model, which can never be sampled).

That is the distribution actually sampled from (vLLM's "processed" log-probs), not the raw T=1 one, so
the importance ratio and the GRAIL check compare like with like; the trainer must be run with the job's
temperature. Temperature 0 (greedy) reports the T=1 log-probs of the chosen tokens.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import config

PAD, BOS, EOS = 0, 1, 2
CHARS = " 0123456789+-*/=.,?abcdefghijklmnopqrstuvwxyz"


class TokenizerError(ValueError):
    pass


class CharTokenizer:
    """PAD=0, BOS=1, EOS=2, then one id per character of CHARS (ids from 3)."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, chars: str = CHARS):
        self.chars = chars
        self.stoi = {c: i + 3 for i, c in enumerate(chars)}
        self.vocab_size = len(chars) + 3

    def encode(self, text: str) -> List[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise TokenizerError(f"character {e.args[0]!r} is not in the tiny vocabulary {self.chars!r}") from None

    def encode_prompt(self, text: str) -> List[int]:
        return [BOS] + self.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= 3:
                out.append(self.chars[i - 3])
        return "".join(out)

    def token_text(self, i: int) -> str:
        return {PAD: "<pad>", BOS: "<s>", EOS: "</s>"}.get(i) or self.chars[i - 3]


def _blas_is_reference() -> bool:
    try:
        return "BLAS_INFO=generic" in torch.__config__.show()
    except Exception:  # noqa: BLE001
        return False


# Debian's torch links the reference (netlib) BLAS: F.linear runs at ~2 GFLOPS there, while oneDNN's
# convolution (bundled with torch) is 5-10x faster for the same product. Same parameters and state_dict
# (nn.Linear's), same numbers up to float rounding; only the kernel differs. Elsewhere F.linear is used.
LINEAR_VIA_CONV = _blas_is_reference()


def linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    if LINEAR_VIA_CONV and x.dim() == 3 and x.device.type == "cpu":
        return F.conv1d(x.transpose(1, 2), lin.weight[:, :, None], lin.bias).transpose(1, 2)
    return F.linear(x, lin.weight, lin.bias)


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        h = self.n_head
        q, k, v = linear(self.ln1(x), self.qkv).split(d, dim=2)
        q, k, v = (t.view(b, l, h, d // h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        att = att.masked_fill(~causal[:l, :l], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, l, d)
        x = x + linear(y, self.proj)
        return x + linear(F.gelu(linear(self.ln2(x), self.fc)), self.out)


class TinyTransformer(nn.Module):
    """Pre-LN causal transformer with learned positions. Right padding is harmless: causal attention
    never lets a position see the padding after it."""

    def __init__(self, vocab_size: int, n_layer: int, d_model: int, n_head: int, max_len: int, seed: int):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not a multiple of n_head {n_head}")
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        # not persistent: the policy file holds parameters only, so its bytes depend on the weights alone
        self.register_buffer("causal", torch.ones(max_len, max_len).tril().bool(), persistent=False)
        self.reset(seed)

    @torch.no_grad()
    def reset(self, seed: int) -> None:
        # A private generator and a fixed parameter order: the same seed gives the same bytes in the
        # trainer and in every engine, whatever else the process did with torch's global RNG.
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.startswith("ln") or ".ln" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        l = ids.shape[1]
        if l > self.max_len:
            raise ValueError(f"sequence length {l} exceeds the model's max length {self.max_len}")
        x = self.tok(ids) + self.pos(torch.arange(l, device=ids.device))
        for blk in self.blocks:
            x = blk(x, self.causal)
        return linear(self.ln_f(x), self.head)


class TinyPolicy:
    """The built-in policy: char tokenizer + TinyTransformer. The policy state is the full state_dict."""

    kind = "tiny"

    def __init__(self, seed: int, n_layer: int = config.N_LAYER, d_model: int = config.D_MODEL,
                 n_head: int = config.N_HEAD, max_len: int = config.MAX_LEN):
        self.tokenizer = CharTokenizer()
        self.vocab_size = self.tokenizer.vocab_size
        self.pad_id, self.eos_id = PAD, EOS
        self.banned_ids = [PAD, BOS]
        self.max_len = max_len
        self.device = torch.device("cpu")
        self.module = TinyTransformer(self.vocab_size, n_layer, d_model, n_head, max_len, seed)

    def encode_prompt(self, text: str) -> List[int]:
        return self.tokenizer.encode_prompt(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def token_text(self, i: int) -> str:
        return self.tokenizer.token_text(i)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.module(ids)

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def policy_state(self) -> dict:
        return self.module.state_dict()

    def load_policy_state(self, state: dict) -> None:
        self.module.load_state_dict(state, strict=True)


class HFPolicy:
    """A Hugging Face causal LM, optionally with a LoRA adapter (peft); the same interface as TinyPolicy,
    so sampling, log-probs and the GRPO step are the same code for both.

    NOT TESTED HERE: transformers/peft are not installed on the development machine; this path is
    exercised only in the GPU trainer image. The policy state is the LoRA adapter's weights when LoRA is
    on (small, fits the bus's object store), the full state_dict otherwise. `seed` fixes the LoRA init.
    """

    kind = "hf"

    def __init__(self, name: str, seed: int, lora_rank: int = 0, lora_alpha: int = 0,
                 max_len: Optional[int] = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: heavy and optional

        torch.manual_seed(seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=dtype)
        self.lora = lora_rank > 0
        if self.lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_alpha or 2 * lora_rank,
                                                     task_type="CAUSAL_LM", target_modules="all-linear"))
        self.module = model.to(self.device)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.vocab_size = model.config.vocab_size
        self.banned_ids: List[int] = []
        self.max_len = max_len or getattr(model.config, "max_position_embeddings", 4096)

    def encode_prompt(self, text: str) -> List[int]:
        return list(self.tokenizer(text).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_text(self, i: int) -> str:
        return self.tokenizer.convert_ids_to_tokens(int(i))

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        # right padding + causal attention: valid positions never attend to the padding
        return self.module(input_ids=ids.to(self.device)).logits.float()

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def policy_state(self) -> dict:
        if self.lora:
            from peft import get_peft_model_state_dict

            return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(self.module).items()}
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_policy_state(self, state: dict) -> None:
        if self.lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.module, state)
        else:
            self.module.load_state_dict(state, strict=True)


def build_policy(model: str, seed: int, *, n_layer: int = config.N_LAYER, d_model: int = config.D_MODEL,
                 n_head: int = config.N_HEAD, max_len: int = config.MAX_LEN, lora_rank: int = 0,
                 lora_alpha: int = 0):
    """`tiny` -> TinyPolicy; `hf:<name-or-path>` -> HFPolicy."""
    if model == "tiny":
        return TinyPolicy(seed, n_layer=n_layer, d_model=d_model, n_head=n_head, max_len=max_len)
    if model.startswith("hf:") and len(model) > 3:
        return HFPolicy(model[3:], seed, lora_rank=lora_rank, lora_alpha=lora_alpha)
    raise ValueError(f"unknown model {model!r}: expected 'tiny' or 'hf:<name-or-path>'")


def token_log_probs(logits: torch.Tensor, temperature: float, banned_ids: Sequence[int] = ()) -> torch.Tensor:
    """Log-probabilities of the distribution sampled from (see the module docstring). logits [..., V]."""
    logits = logits.float()
    if temperature > 0:
        logits = logits / temperature
    if banned_ids:
        logits = logits.clone()
        logits[..., list(banned_ids)] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def right_pad(rows: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out


@torch.no_grad()
def sample(policy, prompts: Sequence[Sequence[int]], n: int, max_tokens: int, temperature: float,
           generator: Optional[torch.Generator] = None) -> List[dict]:
    """n completions for each prompt (token ids), all rows advanced by one batched forward per token.

    Returns len(prompts) * n dicts {prompt_index, token_ids, logprobs, finish_reason}, prompt-major.
    A completion stops at EOS (EOS kept in token_ids with its log-prob) or after max_tokens ("length").
    No KV cache: the sequences are short and this keeps one forward function for sampler and trainer.
    """
    rows = [list(p) for p in prompts for _ in range(n)]
    if not rows:
        return []
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if int(lens.max()) + max_tokens > policy.max_len:
        raise ValueError(f"prompt ({int(lens.max())} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                         f"max length {policy.max_len}")
    buf = right_pad(rows, policy.pad_id)
    buf = torch.cat([buf, torch.full((len(rows), max_tokens), policy.pad_id, dtype=torch.long)], dim=1)
    buf = buf.to(policy.device)
    out = [{"prompt_index": i // n, "token_ids": [], "logprobs": [], "finish_reason": "length"} for i in range(len(rows))]
    done = torch.zeros(len(rows), dtype=torch.bool)
    policy.module.eval()
    for t in range(max_tokens):
        cur = lens + t
        live = (~done).nonzero().flatten()
        logits = policy.logits(buf[live, : int(cur[live].max())])
        last = logits[torch.arange(len(live)), cur[live] - 1].cpu()
        lp = token_log_probs(last, temperature, policy.banned_ids)
        if temperature > 0:
            tok = torch.multinomial(lp.exp(), 1, generator=generator).flatten()
        else:
            lp = token_log_probs(last, 1.0, policy.banned_ids)
            tok = lp.argmax(-1)
        chosen = lp.gather(1, tok[:, None]).flatten()
        buf[live.to(policy.device), cur[live].to(policy.device)] = tok.to(policy.device)
        for j, row in enumerate(live.tolist()):
            out[row]["token_ids"].append(int(tok[j]))
            out[row]["logprobs"].append(float(chosen[j]))
            if int(tok[j]) == policy.eos_id:
                out[row]["finish_reason"] = "stop"
                done[row] = True
        if bool(done.all()):
            break
    return out


def completion_log_probs(policy, pairs: Sequence[tuple], temperature: float) -> tuple:
    """Log-probs of each completion's tokens given its prompt, in one batched forward (with grad).

    pairs: [(prompt_ids, completion_ids)]. Returns (logp [N, T], mask [N, T]) with T the longest
    completion; logp[i, j] is the log-prob of completion i's token j; mask marks real tokens.
    """
    seqs = [list(p) + list(c) for p, c in pairs]
    width = max(len(s) for s in seqs)
    ids = right_pad(seqs, policy.pad_id).to(policy.device)
    t_max = max((len(c) for _, c in pairs), default=0)
    n = len(pairs)
    if t_max == 0:
        return torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.bool)
    logits = policy.logits(ids[:, : width - 1])  # [N, width-1, V]
    # completion token j of row i sits at position len(prompt)+j and is predicted at len(prompt)+j-1
    pos = torch.zeros(n, t_max, dtype=torch.long)
    tgt = torch.zeros(n, t_max, dtype=torch.long)
    mask = torch.zeros(n, t_max, dtype=torch.bool)
    for i, (p, c) in enumerate(pairs):
        if c:
            k = len(c)
            pos[i, :k] = torch.arange(len(p) - 1, len(p) - 1 + k)
            tgt[i, :k] = torch.tensor(list(c), dtype=torch.long)
            mask[i, :k] = True
    dev = logits.device
    rows = torch.arange(n, device=dev)[:, None]
    # normalise only at the completion positions (a large vocabulary x a long prompt stays cheap)
    lp = token_log_probs(logits[rows, pos.to(dev)], temperature, policy.banned_ids)  # [N, T, V]
    logp = lp.gather(2, tgt.to(dev)[..., None]).squeeze(2)
    mask = mask.to(dev)
    return logp.masked_fill(~mask, 0.0), mask
