"""Defaults shared by the engines and the trainer: the built-in tiny model's shape, the init seed, CPU threads."""

# Model: the built-in tiny char-level causal transformer.
MODEL = "tiny"
N_LAYER = 2
D_MODEL = 64
N_HEAD = 4
MAX_LEN = 32

SEED = 1
THREADS = 1
