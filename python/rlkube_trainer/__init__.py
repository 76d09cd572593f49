"""The GRPO trainer: the step, its math, data-parallel ranks, and its HTTP server (docs/contracts.md, "Trainer")."""
