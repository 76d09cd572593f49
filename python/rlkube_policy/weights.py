"""Policy files: safetensors with rlkube metadata, sha256 digests, atomic writes.

A policy version is one safetensors file (docs/contracts.md): the tiny model's state, a Hugging Face
model's full state_dict, or a LoRA adapter's weights under PEFT's key names. `__metadata__` says which
(`rlkube.kind`) and, for LoRA, carries PEFT's adapter_config.json (`rlkube.adapter_config`), so an agent
can lay out the PEFT directory vLLM loads without reading the tensors. Checkpoints (weights + optimizer
state) are torch.save files beside them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
from typing import Callable, Dict, Tuple

import torch
from safetensors import safe_open

KINDS = ("tiny", "full", "lora")
CHUNK = 1 << 20
DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def write_policy(path: str, state: Dict[str, torch.Tensor], kind: str, version: int, extra: Dict[str, str] = None) -> str:
    """Writes a policy file atomically; returns its digest."""
    if kind not in KINDS:
        raise ValueError(f"unknown policy kind {kind!r}")
    meta = {"rlkube.kind": kind, "rlkube.version": str(version)}
    meta.update({f"rlkube.{k}": v for k, v in (extra or {}).items()})
    atomic_write_with(path, lambda tmp: _save(state, meta, tmp))
    return file_digest(path)


def _save(state: Dict[str, torch.Tensor], meta: Dict[str, str], path: str) -> None:
    """The safetensors format written in a fixed order (header keys sorted, tensors by name), so that equal
    weights give equal bytes and digests (safetensors' own writer orders metadata by a hash map), one tensor
    at a time (no second copy of the whole state in memory)."""
    names = sorted(state)
    header: dict = {"__metadata__": dict(sorted(meta.items()))}
    offset = 0
    for name in names:
        t = state[name]
        size = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in names:
            t = state[name].detach().to("cpu").contiguous().reshape(-1)
            f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def read_policy(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(tensors, metadata) of a policy file; ValueError when it is not one."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad header
        raise ValueError(f"{path} is not a safetensors file: {type(e).__name__}: {e}") from None
    if meta.get("rlkube.kind") not in KINDS:
        raise ValueError(f"{path} is not an rlkube policy file (rlkube.kind is {meta.get('rlkube.kind')!r})")
    return tensors, meta


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def serialize(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def deserialize(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def atomic_write(path: str, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write_with(path, write)


def atomic_write_with(path: str, write: Callable[[str], None]) -> None:
    """write(tmp) into a temporary file of the same directory, fsync, rename: readers see all or nothing."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
