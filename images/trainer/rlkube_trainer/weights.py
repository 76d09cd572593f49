"""Policy weight files: serialisation, sha256 digests, atomic writes."""
from __future__ import annotations

import hashlib
import io
import os
import tempfile

import torch


def serialize(state: dict) -> bytes:
    """torch.save bytes of a state dict (deterministic for equal tensors, so digests can be compared)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def deserialize(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def atomic_write(path: str, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, rename: readers see all or nothing."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
