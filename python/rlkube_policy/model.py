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

import json
import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import defaults

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
        b, seq_len, d = x.shape
        h = self.n_head
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(b, seq_len, h, d // h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
        att = att.masked_fill(~causal[:seq_len, :seq_len], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, seq_len, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


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
        seq_len = ids.shape[1]
        if seq_len > self.max_len:
            raise ValueError(f"sequence length {seq_len} exceeds the model's max length {self.max_len}")
        x = self.tok(ids) + self.pos(torch.arange(seq_len, device=ids.device))
        for blk in self.blocks:
            x = blk(x, self.causal)
        return self.head(self.ln_f(x))


class TinyPolicy:
    """The built-in policy: char tokenizer + TinyTransformer. The policy state is the full state_dict."""

    kind = "tiny"  # what its policy files hold (see weights.py)

    def __init__(self, seed: int, n_layer: int = defaults.N_LAYER, d_model: int = defaults.D_MODEL,
                 n_head: int = defaults.N_HEAD, max_len: int = defaults.MAX_LEN):
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

    def logits(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits of positions [start, L) of ids [N, L]."""
        return self.module(ids)[:, start:]

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def policy_state(self) -> dict:
        return self.module.state_dict()

    def load_policy_state(self, state: dict) -> None:
        self.module.load_state_dict(state, strict=True)

    def file_metadata(self) -> dict:
        return {}


class HFPolicy:
    """A Hugging Face causal LM (a hub id or a model folder), fully fine-tuned or with a LoRA adapter (peft);
    the same interface as TinyPolicy, so sampling, log-probs and the GRPO step are the same code for both.

    The policy state is the adapter's weights with LoRA (PEFT's key names, what vLLM loads from a PEFT
    directory), the full state_dict otherwise (tied weights once). `seed` fixes the LoRA init, so the trainer
    and every engine start from the same bytes. bf16 on GPU, fp32 on CPU.
    """

    def __init__(self, name: str, seed: int, lora_rank: int = 0, lora_alpha: int = 0,
                 max_len: Optional[int] = None, device: Optional[str] = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: only HF jobs pay for the import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the servers' stderr stays JSON lines: no progress bars, no chatter
        hf_logging.disable_progress_bar()
        self.name = name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
        self.lora = lora_rank > 0
        self.kind = "lora" if self.lora else "full"
        if self.lora:
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(seed)  # the adapter's A matrices are drawn from the global RNG
            model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_alpha or 2 * lora_rank,
                                                     lora_dropout=0.0, task_type="CAUSAL_LM",
                                                     target_modules="all-linear"))
        self.module = model.to(self.device)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.vocab_size = model.config.vocab_size if not self.lora else model.base_model.model.config.vocab_size
        self.banned_ids: List[int] = []
        cfg = model.config if not self.lora else model.base_model.model.config
        self.max_len = max_len or getattr(cfg, "max_position_embeddings", 4096)

    def encode_prompt(self, text: str) -> List[int]:
        return list(self.tokenizer(text).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_text(self, i: int) -> str:
        return self.tokenizer.convert_ids_to_tokens(int(i))

    def logits(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        # Right padding + causal attention: valid positions never attend to the padding. Only positions
        # [start, L) go through the LM head: a long prompt costs no full-vocabulary logits.
        keep = ids.shape[1] - start
        return self.module(input_ids=ids.to(self.device), logits_to_keep=keep).logits.float()

    def trainable_parameters(self):
        return [p for p in self.module.parameters() if p.requires_grad]

    def policy_state(self) -> dict:
        if self.lora:
            from peft import get_peft_model_state_dict

            return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(self.module).items()}
        return _without_aliases({k: v.detach().cpu() for k, v in self.module.state_dict().items()})

    def load_policy_state(self, state: dict) -> None:
        if self.lora:
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.module, state)
            unexpected = list(getattr(result, "unexpected_keys", []) or [])
            if unexpected:
                raise ValueError(f"adapter keys this model does not have: {unexpected[:3]}")
            return
        missing, unexpected = self.module.load_state_dict(state, strict=False)
        tied = set(getattr(self.module, "_tied_weights_keys", None) or [])
        if unexpected or any(k not in tied and not _is_tied(self.module, k) for k in missing):
            raise ValueError(f"weights do not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def file_metadata(self) -> dict:
        """What a PEFT directory needs besides the weights (adapter_config.json), for LoRA policy files."""
        if not self.lora:
            return {}
        cfg = self.module.peft_config["default"].to_dict()
        cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
        cfg["base_model_name_or_path"] = self.name
        return {"adapter_config": json.dumps(cfg, sort_keys=True, default=str)}

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], n: int, max_tokens: int, temperature: float,
                 generator: Optional[torch.Generator] = None) -> List[dict]:
        """transformers' generate (KV cache), left-padded; log-probs from its raw logits, processed as the
        trainer's are (token_log_probs). Sampling is plain: no top-k/top-p, the temperature only."""
        rows = [list(p) for p in prompts for _ in range(n)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            attn[i, width - len(r):] = 1
        if generator is not None:  # generate draws from the global RNG: seed it from ours
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        self.module.eval()
        greedy = temperature <= 0
        out = self.module.generate(
            input_ids=ids.to(self.device), attention_mask=attn.to(self.device), max_new_tokens=max_tokens,
            do_sample=not greedy, temperature=None if greedy else temperature, top_k=0, top_p=1.0,
            min_p=None, eos_token_id=self.eos_id, pad_token_id=self.pad_id, return_dict_in_generate=True,
            output_logits=True)
        new = out.sequences[:, width:].cpu()
        if new.shape[1] == 0:
            return [{"prompt_index": i // n, "token_ids": [], "logprobs": [], "finish_reason": "length"} for i in range(len(rows))]
        logits = torch.stack(out.logits, dim=1).float().cpu()  # [rows, T, V]
        lp = token_log_probs(logits, temperature if not greedy else 1.0, self.banned_ids)
        chosen = lp.gather(2, new[..., None]).squeeze(2)
        results = []
        for i in range(len(rows)):
            toks = new[i].tolist()
            stop = toks.index(self.eos_id) + 1 if self.eos_id in toks else len(toks)
            results.append({"prompt_index": i // n, "token_ids": toks[:stop],
                            "logprobs": [float(x) for x in chosen[i, :stop]],
                            "finish_reason": "stop" if stop <= len(toks) and self.eos_id in toks else "length"})
        return results


def _without_aliases(state: dict) -> dict:
    """A state_dict with each storage once (tied input/output embeddings): safetensors refuses aliases, and a
    loader ties them again."""
    seen, out = set(), {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out


def _is_tied(module, key: str) -> bool:
    """Whether parameter `key` shares its storage with another one of the module (tied embeddings)."""
    state = module.state_dict()
    if key not in state:
        return False
    ptr = state[key].untyped_storage().data_ptr()
    return any(k != key and v.untyped_storage().data_ptr() == ptr for k, v in state.items())


def build_policy(model: str, seed: int, *, n_layer: int = defaults.N_LAYER, d_model: int = defaults.D_MODEL,
                 n_head: int = defaults.N_HEAD, max_len: int = defaults.MAX_LEN, lora_rank: int = 0,
                 lora_alpha: int = 0, device: Optional[str] = None):
    """`tiny` -> TinyPolicy; `hf:<hub-id-or-folder>` -> HFPolicy."""
    if model == "tiny":
        return TinyPolicy(seed, n_layer=n_layer, d_model=d_model, n_head=n_head, max_len=max_len)
    if model.startswith("hf:") and len(model) > 3:
        return HFPolicy(model[3:], seed, lora_rank=lora_rank, lora_alpha=lora_alpha, device=device)
    raise ValueError(f"unknown model {model!r}: expected 'tiny' or 'hf:<hub-id-or-folder>'")


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
    """n completions for each prompt (token ids), prompt-major: len(prompts) * n dicts
    {prompt_index, token_ids, logprobs, finish_reason}. A completion stops at EOS (EOS kept in token_ids with
    its log-prob) or after max_tokens ("length"). HF policies sample with transformers' generate; the tiny
    one with the loop below (one batched forward per token, no KV cache: its sequences are short)."""
    rows = [list(p) for p in prompts for _ in range(n)]
    if not rows:
        return []
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    if int(lens.max()) + max_tokens > policy.max_len:
        raise ValueError(f"prompt ({int(lens.max())} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                         f"max length {policy.max_len}")
    if isinstance(policy, HFPolicy):
        return policy.generate(prompts, n, max_tokens, temperature, generator)
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
    """Log-probs of each completion's tokens given its prompt, in one batched forward (with grad): callers
    bound memory by passing a micro-batch of pairs (see completion_log_probs_chunked).

    pairs: [(prompt_ids, completion_ids)]. Returns (logp [N, T], mask [N, T]) with T the longest
    completion; logp[i, j] is the log-prob of completion i's token j; mask marks real tokens.
    """
    n = len(pairs)
    t_max = max((len(c) for _, c in pairs), default=0)
    if t_max == 0:
        return torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.bool)
    seqs = [list(p) + list(c) for p, c in pairs]
    width = max(len(s) for s in seqs)
    ids = right_pad(seqs, policy.pad_id).to(policy.device)
    # completion token j of row i sits at position len(prompt)+j and is predicted at len(prompt)+j-1; only
    # positions from the shortest prompt's last token on need logits
    start = min(len(p) for p, _ in pairs) - 1
    logits = policy.logits(ids[:, : width - 1], start)  # [N, width-1-start, V]
    pos = torch.zeros(n, t_max, dtype=torch.long)
    tgt = torch.zeros(n, t_max, dtype=torch.long)
    mask = torch.zeros(n, t_max, dtype=torch.bool)
    for i, (p, c) in enumerate(pairs):
        if c:
            k = len(c)
            pos[i, :k] = torch.arange(len(p) - 1 - start, len(p) - 1 - start + k)
            tgt[i, :k] = torch.tensor(list(c), dtype=torch.long)
            mask[i, :k] = True
    dev = logits.device
    rows = torch.arange(n, device=dev)[:, None]
    lp = token_log_probs(logits[rows, pos.to(dev)], temperature, policy.banned_ids)  # [N, T, V]
    logp = lp.gather(2, tgt.to(dev)[..., None]).squeeze(2)
    mask = mask.to(dev)
    return logp.masked_fill(~mask, 0.0), mask


def micro_batch_slices(lengths: Sequence[int], max_rows: int, max_tokens: Optional[int] = None) -> List[slice]:
    """Cuts rows of these lengths (prompt + completion tokens) into consecutive micro-batches, in order, each as
    long as it may be: at most `max_rows` rows and, rows being padded to the longest, rows x its longest length
    at most `max_tokens` (None: rows only). A row longer than the budget makes a micro-batch alone. The trainer's
    log-prob passes and its training micro-batches are cut this way: the budget bounds a forward's memory where
    a row count does not (long, uneven completions)."""
    out: List[slice] = []
    start, longest = 0, 0
    for i, n in enumerate(lengths):
        longest = max(longest, n)
        rows = i - start + 1
        if rows > 1 and (rows > max_rows or (max_tokens is not None and rows * longest > max_tokens)):
            out.append(slice(start, i))
            start, longest = i, n
    if lengths:
        out.append(slice(start, len(lengths)))
    return out


@torch.no_grad()
def completion_log_probs_chunked(policy, pairs: Sequence[tuple], temperature: float, micro_batch: int,
                                 micro_batch_tokens: Optional[int] = None) -> torch.Tensor:
    """completion_log_probs of many pairs, one forward per micro-batch (micro_batch_slices: at most `micro_batch`
    rows and `micro_batch_tokens` padded tokens): peak memory is that of one micro-batch whatever len(pairs).
    Returns logp [N, T] on the CPU (no grad)."""
    t_max = max((len(c) for _, c in pairs), default=0)
    out = torch.zeros(len(pairs), t_max)
    for part in micro_batch_slices([len(p) + len(c) for p, c in pairs], micro_batch, micro_batch_tokens):
        logp, _ = completion_log_probs(policy, pairs[part], temperature)
        out[part, : logp.shape[1]] = logp.float().cpu()
    return out
