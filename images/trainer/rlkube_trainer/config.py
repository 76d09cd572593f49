"""Shared defaults of the trainer, the policy server and the learn check (tuned by scripts/learn_check.py)."""

# Model: the built-in tiny char-level causal transformer.
MODEL = "tiny"
N_LAYER = 2
D_MODEL = 64
N_HEAD = 4
MAX_LEN = 32
EOS_INIT_BIAS = 0.0

# Algorithm (the RLJob spec.algorithm / spec.verification defaults).
LR = 3e-3
TEMPERATURE = 1.0
CLIP_LOW = 0.2
CLIP_HIGH = 0.28
KL_COEF = 0.0
IS_CAP = 2.0
MAX_GRAD_NORM = 1.0
SKIP_UNIFORM_GROUPS = False
MINIBATCHES = 8  # optimizer steps per train_step (PPO-style minibatches of whole groups)
ADAM_BETA2 = 0.999
LOGPROB_TOLERANCE = 0.10
SAMPLED_POSITIONS = 32
SEED = 1
MAX_TOKENS = 8

# Retention in the checkpoint directory (policy-v0 is always kept: it is the KL reference).
KEEP_POLICIES = 16
KEEP_CHECKPOINTS = 2
KEEP_RESULTS = 16

THREADS = 1
