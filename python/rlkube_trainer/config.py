"""The trainer's defaults and the learn check's (tuned by scripts/learn_check.py); the model's are rlkube_policy.defaults."""

# Algorithm (the RLJob spec.algorithm / spec.verification defaults). Tuned with scripts/learn_check.py on
# `reverse` (G=8, B=32, maxTokens 8) from a random init: 5 seeds reach a 5-step mean reward >= 0.8 at
# steps 60-80. What mattered: several optimizer steps per batch (MINIBATCHES; one step per batch plateaus
# near 0.35-0.6 at any lr), lr 1e-3 (3e-3 collapses EOS and stalls), temperature slightly above 1 (keeps
# exploring the stop position and the later characters; 1.0 leaves ~1 seed in 3 on a plateau near 0.75).
LR = 1e-3
TEMPERATURE = 1.1
CLIP_LOW = 0.2
CLIP_HIGH = 0.28
# 0 for the trainer (an LLM post-training default); examples/reverse-cpu.yaml sets klCoef 0.05 for the tiny policy
# from a random init. Without it the stop decision collapses: a seed on a plateau (learn_check --seed 3, final
# 0.61) always answers length-2 inputs with 1 character, length-3 with 4 and length-4 with 3, at temperature 1.1 —
# no completion of another length is ever sampled again, so no group can teach it. The random init is near
# uniform, so k3 KL to it works as an entropy floor. learn_check seeds 1-8, lag 0 / lag 1, seeds reaching a
# 5-step mean of 0.8 within 150 steps: klCoef 0: 6/8, 4/8; 0.02: 7/8, 8/8; 0.05: 8/8, 8/8 (steps 42-122,
# finals 0.81-0.96); 0.1: 8/8, 8/8 but finals held near 0.82. Temperature 1.3 instead: 5/8, 3/8.
KL_COEF = 0.0
# Off-policy groups' importance weights (truncated IS) are capped at 2. Capping at 1 (down-weighting only, V-trace's
# default) was measured against it and not kept. learn_check --lag 1 (every group one version old), step of the
# 5-step mean reaching 0.8 / final 10-step mean, seeds 1-4: cap 2: 81/0.92, never/0.41, 124/0.71, 122/0.92;
# cap 1: 78/0.81, 72/0.87, 63/0.73, never/0.48 — 1 seed in 4 plateaus either way (completions of the wrong
# length: the stop position), as seed 3 does on-policy (--lag 0: never/0.61). In `rlkube run` AsyncPushPull
# (10-30 % of groups one version old) cap 1 left seed 2 at 0.71, where cap 2 reached 0.8 at steps 47 and 43.
IS_CAP = 2.0
MAX_GRAD_NORM = 1.0
SKIP_UNIFORM_GROUPS = False  # True: steadier late (5/5 seeds end >= 0.83) but slower early (steps 43-112)
MINIBATCHES = 8  # optimizer steps per train_step (PPO-style minibatches of whole groups)
MICRO_BATCH = 16  # completions per forward/backward (gradient accumulation): bounds the trainer's peak memory
ADAM_BETA2 = 0.999
LOGPROB_TOLERANCE = 0.10
SAMPLED_POSITIONS = 32
MAX_TOKENS = 8

# Retention in the checkpoint directory (policy-v0 is always kept: it is the KL reference).
KEEP_POLICIES = 16
KEEP_CHECKPOINTS = 2
KEEP_RESULTS = 16

