"""Environments as a service: the task of (seed, seq) and the reward of a completion, behind one HTTP contract
(docs/contracts.md). Built-ins (reverse, arithmetic, gsm8k, math), reasoning-gym tasks and `verifiers` modules."""
