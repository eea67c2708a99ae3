"""Trainer callbacks: per-epoch masking and progress lines."""

from __future__ import annotations

import math
import time

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
    """Prints one line per logging step through longzoo's ``Steps`` (silent by default).

    With ``advance`` (from ``Steps.step(..., total=...)``) it also moves the live bar by one
    optimizer step and shows the tokens per second since the run (or its resumption) began.
    """

    def __init__(self, steps, advance=None, tokens_per_step: int = 0):
        self.steps = steps
        self.advance = advance
        self.tokens_per_step = tokens_per_step
        self.started = self.first_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.advance is None or not state.is_world_process_zero or self.started is None:
            return
        done = state.global_step - self.first_step
        seconds = max(time.perf_counter() - self.started, 1e-9)
        self.advance(1, rate=f"{done * self.tokens_per_step / seconds:,.0f} tokens/s" if self.tokens_per_step else "")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.steps.log is not None and logs:
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())
            self.steps.log.print(f"step {state.global_step}/{state.max_steps}: {shown}", highlight=False)
