"""vLLM worker extension (``--worker-extension-cls rlkube_vllm.worker.RlkubeWorkerExtension``).

vLLM mixes this class into each of its GPU workers, so ``collective_rpc("rlkube_reload_weights", ...)``
runs the method on every tensor-parallel rank. Each rank streams the tensors of the policy file (the full
state_dict the trainer wrote, with Hugging Face parameter names) one at a time into the model's own
``load_weights``, which maps HF names onto vLLM's fused/sharded parameters and copies the rank's shard in
place. Nothing is allocated beyond one tensor at a time: the KV cache and CUDA graphs stay valid because
every parameter keeps its storage.
"""
from __future__ import annotations

from typing import Iterator

import torch
from safetensors import safe_open


def tensors_of(path: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The file's tensors, read one by one from the memory-mapped file (never the whole file in memory)."""
    with safe_open(path, framework="pt", device="cpu") as f:
        for name in f.keys():
            yield name, f.get_tensor(name)


class RlkubeWorkerExtension:
    """Methods added to vLLM's worker (``self`` is the worker: ``self.model_runner`` is its model runner)."""

    def rlkube_reload_weights(self, path: str) -> int:
        """Loads the full weights in the safetensors file at ``path`` into the running model; returns the
        number of tensors read. Raises (and the route answers 500) if a name does not fit the model."""
        model = self.model_runner.get_model()
        count = 0

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            for item in tensors_of(path):
                count += 1
                yield item

        model.load_weights(counted())
        torch.cuda.synchronize()
        return count
