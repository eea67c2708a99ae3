"""The defaults of longzoo's training settings, by ``TrainingArguments`` field name.

They are the field defaults of :class:`~longzoo.training.arguments.PretrainArguments` and
``FinetuneArguments``, and the CLI shows them in ``--help``.  They live apart from those
classes only because importing ``TrainingArguments`` takes seconds and ``--help`` should not.
"""

from __future__ import annotations

from types import MappingProxyType

# The Longformer paper's continued-pretraining recipe (lr 3e-5, linear schedule, Adam eps 1e-6,
# clip at 5), at a size that fits one GPU: batch 1 x 8 accumulation.
PRETRAIN = MappingProxyType(
    {
        "max_steps": 1000,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "learning_rate": 3e-5,
        "weight_decay": 0.01,
        "adam_epsilon": 1e-6,
        "max_grad_norm": 5.0,
        "mlm_probability": 0.15,
        "seed": 42,
    }
)

# Document classification: a few epochs, 10% warmup (a ratio, as transformers reads a value below 1).
FINETUNE = MappingProxyType(
    {
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 3e-5,
        "warmup_steps": 0.1,
        "weight_decay": 0.01,
        "seed": 42,
    }
)
