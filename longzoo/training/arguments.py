"""Training settings: transformers' ``TrainingArguments`` with longzoo's fields and defaults.

One definition per setting.  The CLI's options are these fields (same names, with short
aliases such as ``--lr``), the zoo's recipes store overrides of them, and the manifest
records them; nothing maps one set of names onto another.  As in sentence-transformers,
the subclass adds the task's own fields (masking, global attention, baselines) and sets the
defaults of the recipe it implements, so ``Trainer`` receives the object as it is.

Some defaults depend on other settings (warmup and checkpoint intervals on ``max_steps``,
the bf16 flag on ``precision``); ``__post_init__`` derives them, and :func:`override` derives
them again when a copy changes what they depend on — plain ``dataclasses.replace`` would
carry the old values over.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from longzoo.choices import Attention, Baseline, GlobalAttention, Precision, ReportTo, Task, Wwm
from longzoo.errors import LongzooError
from longzoo.numbers import require_int, require_number
from longzoo.training.defaults import FINETUNE, PRETRAIN

# Not kept in records: where this machine put things, and what its hardware decided.
_MACHINE_FIELDS = frozenset(
    {"output_dir", "logging_dir", "use_cpu", "ddp_backend", "hub_token", "push_to_hub_token", "num_proc"}
)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity; a container's share where it sets one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively: a CUDA GPU with bf16, or a CPU with AMX or AVX-512-BF16."""
    import torch

    if cuda_available():
        return torch.cuda.is_bf16_supported()
    try:  # private helpers, but the only way torch exposes what its CPU kernels can use
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass
class LongzooArguments(TrainingArguments):
    """What every longzoo training run shares."""

    output_dir: str | None = None  # set by the command: OUT/checkpoints, or a scratch folder
    attention: str = field(default="fast", metadata={"help": "fast (exact, blocked SDPA) or transformers' reference"})
    # "auto": bf16 mixed precision where the hardware runs it natively (resolved when made;
    # the resolved value is what the manifest records).  --bf16 / --fp16 still set it.
    precision: str = "fp32"
    report_to: None | str | list[str] = "none"
    logging_nan_inf_filter: bool = False  # a NaN loss stops the run (LongzooTrainer); never average it away
    dataloader_num_workers: int = 0  # masks follow the dataset's epoch, which is set in this process
    dataloader_pin_memory: bool = False
    disable_tqdm: bool | None = True  # StepsCallback prints the progress lines
    per_device_eval_batch_size: int | None = None  # default: the training batch size
    data_seed: int | None = None  # default: seed

    def __post_init__(self):
        self.check()  # one error line naming the option, before transformers' own checks
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        self.derive()
        # what derive() changed, as it was given: override() gives it back to be derived again
        self._derived = {name: value for name, value in given.items() if getattr(self, name) != value}
        # Without CUDA, transformers runs bf16 autocast, and a torchrun launch (accelerate's
        # MULTI_CPU over gloo), only with use_cpu.
        self.use_cpu = self.use_cpu or not cuda_available()
        super().__post_init__()

    def check(self) -> None:
        require_int("per_device_train_batch_size", self.per_device_train_batch_size, low=1, high=2**20)
        require_int("gradient_accumulation_steps", self.gradient_accumulation_steps, low=1, high=2**20)
        require_int("seed", self.seed, low=0, high=2**32 - 1)
        require_number("learning_rate", self.learning_rate, low=0.0, high=1.0, open_low=True)
        require_number("weight_decay", self.weight_decay, low=0.0, high=1.0)
        Attention.require("--attention", self.attention)
        Precision.require("--precision", self.precision)
        for name in [self.report_to] if isinstance(self.report_to, str) else self.report_to or []:
            ReportTo.require("--report-to", name)
            package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(name)
            if package and importlib.util.find_spec(package) is None:
                raise LongzooError(f"--report-to {name} needs the {package} package: pip install {package}")
        flags = sorted(name for name in ("bf16", "fp16") if getattr(self, name))
        default = self.__dataclass_fields__["precision"].default
        if len(flags) > 1 or (flags and self.precision not in (default, *flags)):
            given = [f"--{name}" for name in flags] + (
                [f"--precision {self.precision}"] if self.precision != default else []
            )
            raise LongzooError(f"choose one precision, not {' and '.join(given)}")
        if "fp16" in (self.precision, *flags) and not cuda_available():
            option = "--fp16" if self.fp16 else "--precision fp16"
            raise LongzooError(f"{option} needs a CUDA GPU; use --precision bf16 (or auto) on a CPU")

    def derive(self) -> None:
        if self.bf16 or self.fp16:  # the older flags name the precision themselves
            self.precision = "bf16" if self.bf16 else "fp16"
        elif self.precision == "auto":
            self.precision = "bf16" if native_bf16() else "fp32"
        self.bf16, self.fp16 = self.precision == "bf16", self.precision == "fp16"
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if self.data_seed is None:
            self.data_seed = self.seed

    @property
    def sequences_per_step(self) -> int:
        """Sequences one optimizer step reads, over every process and accumulation step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size

    def recorded(self) -> dict:
        """What the manifest keeps: every setting longzoo declares, and any other that differs
        from transformers' default (what this machine decided left out)."""
        ours = {name for cls in type(self).__mro__ if issubclass(cls, LongzooArguments) for name in cls.__annotations__}
        defaults = _transformers_defaults()
        return {
            name: value
            for name, value in self.to_dict().items()
            if name not in _MACHINE_FIELDS and (name in ours or name not in defaults or defaults[name] != value)
        }


@dataclass
class PretrainArguments(LongzooArguments):
    """Continued MLM pretraining (``longzoo pretrain``), with the Longformer recipe's defaults."""

    seq_len: int | None = field(default=None, metadata={"help": "tokens per sequence; default: the model's length"})
    wwm: str = field(default="auto", metadata={"help": "whole-word masking: auto, jieba or none"})
    mlm_probability: float = PRETRAIN["mlm_probability"]
    global_attention: str = field(default="none", metadata={"help": "cls: train with global attention on [CLS]"})
    # Off while pretraining, as in recent encoder recipes (ModernBERT, mmBERT; Cramming found
    # dropout only slows a run that sees each token about once), and because on a CPU a
    # probability dropout moves attention off the fused kernel: 3.5x its time.  None keeps
    # the model's own value.  The saved config is untouched, so fine-tuning gets the base's.
    attention_dropout: float | None = 0.0
    # Processes that tokenize the corpus (datasets' num_proc); the blocks do not depend on it.
    num_proc: int | None = None  # default: the cores available
    eval_split: float | None = None  # hold out this share of the training documents for evaluation

    max_steps: int = PRETRAIN["max_steps"]
    per_device_train_batch_size: int = PRETRAIN["per_device_train_batch_size"]
    gradient_accumulation_steps: int = PRETRAIN["gradient_accumulation_steps"]
    learning_rate: float = PRETRAIN["learning_rate"]
    weight_decay: float = PRETRAIN["weight_decay"]
    adam_epsilon: float = PRETRAIN["adam_epsilon"]
    max_grad_norm: float = PRETRAIN["max_grad_norm"]
    seed: int = PRETRAIN["seed"]
    precision: str = "auto"
    optim: str = "adamw_torch_fused"  # one kernel for the whole update instead of a loop over tensors
    warmup_steps: int | None = None  # default: min(500, max_steps / 10)
    save_steps: int | None = None  # default: max_steps / 10
    logging_steps: int | None = None  # default: max_steps / 50
    eval_steps: int | None = None  # default: max_steps / 5 (used with an eval corpus)
    save_total_limit: int | None = 2
    # The masked blocks hold exactly the model's inputs; the Trainer's column filter reads the
    # forward signature, which sparse prediction wraps, and would drop them.
    remove_unused_columns: bool = False
    prediction_loss_only: bool = True  # evaluation needs the loss, not sparse logits gathered
    # Unused global projections are frozen, so DDP never meets unused parameters.
    ddp_find_unused_parameters: bool | None = False

    def check(self) -> None:
        super().check()
        # the bounds only keep typos (1e20 steps) from running for ever
        require_int("max_steps", self.max_steps, low=1, high=10**7)
        for name in ("save_steps", "logging_steps", "eval_steps"):
            require_int(name, getattr(self, name), low=1, high=10**7, optional=True)
        require_int("warmup_steps", self.warmup_steps, low=0, optional=True)
        require_int("seq_len", self.seq_len, low=8, optional=True)
        require_number("mlm_probability", self.mlm_probability, low=0.0, high=1.0, open_low=True, open_high=True)
        require_number("attention_dropout", self.attention_dropout, low=0.0, high=1.0, open_high=True, optional=True)
        require_int("num_proc", self.num_proc, low=1, high=4096, optional=True)
        require_number("eval_split", self.eval_split, low=0.0, high=1.0, open_low=True, open_high=True, optional=True)
        require_number("adam_epsilon", self.adam_epsilon, low=0.0, high=1.0, open_low=True)
        require_number("max_grad_norm", self.max_grad_norm, low=0.0)
        Wwm.require("--wwm", self.wwm)
        GlobalAttention.require("--global-attention", self.global_attention)

    def derive(self) -> None:
        super().derive()
        steps = self.max_steps
        if self.warmup_steps is None:
            self.warmup_steps = min(500, steps // 10)
        if self.save_steps is None:
            self.save_steps = max(1, steps // 10)
        if self.logging_steps is None:
            self.logging_steps = max(1, steps // 50)
        if self.eval_steps is None:
            self.eval_steps = max(1, steps // 5)
        if self.num_proc is None:
            self.num_proc = available_cores()
        if self.activation_checkpointing and self.activation_checkpointing_kwargs is None:
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.ddp_backend is None and not cuda_available():
            self.ddp_backend = "gloo"


@dataclass
class FinetuneArguments(LongzooArguments):
    """Long-document classification (``longzoo finetune``) and its short-model baselines."""

    task: str = field(default="classification", metadata={"help": "what to fine-tune for"})
    text_field: str = "text"
    label_field: str = "label"
    multi_label: bool = False
    max_len: int | None = None  # tokens the long model reads; default: all its positions
    baselines: tuple[str, ...] = ()
    chunk_len: int | None = None  # stride: tokens per chunk; default: the short model's length
    chunk_overlap: int | None = None  # stride: default a quarter of the chunk
    max_chunks: int | None = None  # stride: default enough to cover max_len
    baseline_learning_rate: float | None = None  # default: learning_rate

    num_train_epochs: float = FINETUNE["num_train_epochs"]
    per_device_train_batch_size: int = FINETUNE["per_device_train_batch_size"]
    gradient_accumulation_steps: int = FINETUNE["gradient_accumulation_steps"]
    learning_rate: float = FINETUNE["learning_rate"]
    warmup_steps: float = FINETUNE["warmup_steps"]
    weight_decay: float = FINETUNE["weight_decay"]
    seed: int = FINETUNE["seed"]
    logging_steps: float = 0.1  # ten log lines per run
    save_strategy: str = "no"  # the model is saved once, when every system is scored
    remove_unused_columns: bool = False  # the stride baseline reads chunk_mask

    def check(self) -> None:
        super().check()
        Task.require("--task", self.task)
        require_int("max_len", self.max_len, low=8, optional=True)
        require_int("chunk_len", self.chunk_len, low=1, optional=True)
        require_int("chunk_overlap", self.chunk_overlap, low=0, optional=True)
        require_int("max_chunks", self.max_chunks, low=1, optional=True)
        require_number("num_train_epochs", self.num_train_epochs, low=0.0, high=10_000.0, open_low=True)
        require_number(
            "baseline_learning_rate", self.baseline_learning_rate, low=0.0, high=1.0, open_low=True, optional=True
        )
        require_number("warmup_steps", self.warmup_steps, low=0.0)
        for baseline in self.baselines:
            Baseline.require("--baseline", baseline)


def override(args: LongzooArguments, **changes) -> LongzooArguments:
    """``args`` with ``changes`` (``dataclasses.replace``), defaults derived again from the new values."""
    again = {name: value for name, value in args._derived.items() if name not in changes}
    return dataclasses.replace(args, **again, **changes)


@functools.cache
def _transformers_defaults() -> dict:
    return TrainingArguments(output_dir="unused", use_cpu=True, report_to="none").to_dict()
