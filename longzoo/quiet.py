"""Silencing transformers' logger where its warnings are expected and only noise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Only errors from transformers inside the block; the previous level is restored.

    Used where longzoo does on purpose what transformers warns about: documents longer
    than ``model_max_length``, Longformer padding to its window, heads it will report.
    """
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """No progress bars or logs from 🤗 datasets inside the block: longzoo shows its own
    progress, and reports a builder's failure as its own one-line error (datasets would log
    it first, at ERROR)."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if enabled:
            datasets.enable_progress_bars()
