"""Trainer callbacks: per-epoch masking and progress lines."""

from __future__ import annotations

import math

from transformers import TrainerCallback


class EpochCallback(TrainerCallback):
    """Tells the dataset which epoch starts, so its masks change each epoch.

    ``state.epoch`` is fractional and restored from a checkpoint on resume, so its floor
    is the epoch being run, also when a run resumes in the middle of one.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = int(math.floor((state.epoch or 0) + 1e-6))


class StepsCallback(TrainerCallback):
    """Prints one line per logging step through longzoo's ``Steps`` (silent by default)."""

    def __init__(self, steps):
        self.steps = steps

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.steps.log is not None and logs:
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())
            self.steps.log.print(f"step {state.global_step}/{state.max_steps}: {shown}", highlight=False)
