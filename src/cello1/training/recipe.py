"""The paper's training recipe (``docs/format.md`` §7), written once.

The stage configs (:mod:`cello1.training.config`) and the verl export
(:mod:`cello1.training.verl`) take their defaults from here, so the numbers are never
restated.
"""

from __future__ import annotations

BASE_MODEL = "Qwen/Qwen2.5-7B-Instruct"

# cold-start SFT
SFT_LORA_R = 256
SFT_LORA_ALPHA = 512
SFT_LORA_DROPOUT = 0.05
SFT_LEARNING_RATE = 5e-5
SFT_EPOCHS = 1.0
SFT_BATCH_SIZE = 6
SFT_GRADIENT_ACCUMULATION = 16
SFT_MAX_LENGTH = 4096

# GRPO
GRPO_ROLLOUTS = 5
GRPO_LEARNING_RATE = 1e-6
GRPO_TRAIN_BATCH_PROMPTS = 64
GRPO_KL_COEF = 0.001
GRPO_ENTROPY_COEF = 0.0
GRPO_MAX_PROMPT_LENGTH = 3072
GRPO_MAX_RESPONSE_LENGTH = 3000
GRPO_EPOCHS = 20
GRPO_GPUS = 8
GRPO_ROLLOUT_TENSOR_PARALLEL = 2

# inference in the released test script
TEST_MAX_NEW_TOKENS = 3500
