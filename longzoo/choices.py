"""The choices of every option that takes one, defined once.

The CLI shows them as choices (typer reads the enums); library code validates the plain
strings it receives against the same values.  ``str`` enums, so a member equals its value.
"""

from __future__ import annotations

from enum import Enum

from longzoo.errors import LongzooError


class Choice(str, Enum):
    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def require(cls, option: str, value) -> None:
        """One line naming ``option`` and the choices unless ``value`` is one of them."""
        if value not in cls.values():
            raise LongzooError(f"{option} must be one of {', '.join(cls.values())}, not {value!r}")

    def __str__(self) -> str:
        return self.value


class Attention(Choice):
    fast = "fast"  # longzoo's exact blocked-SDPA band attention
    reference = "reference"  # transformers' own LongformerSelfAttention


class AttentionForm(Choice):
    """What ``longzoo convert`` writes: which long model the base becomes."""

    longformer = "longformer"  # transformers' Longformer: a sliding window plus global tokens
    full = "full"  # the base's own architecture with a longer position table: every token sees every token


class Wwm(Choice):
    auto = "auto"
    jieba = "jieba"
    none = "none"


class GlobalAttention(Choice):
    none = "none"
    cls = "cls"


class PositionInit(Choice):
    copy = "copy"
    interpolate = "interpolate"


class DType(Choice):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Task(Choice):
    classification = "classification"


class Precision(Choice):
    auto = "auto"  # bf16 mixed precision where the device computes bf16 natively, else fp32
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class ReportTo(Choice):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


class Baseline(Choice):
    truncate = "truncate"
    stride = "stride"
