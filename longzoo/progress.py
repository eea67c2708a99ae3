"""Step-by-step progress that library code can report and the CLI can show."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress


class Steps:
    """Reports the named steps of a long job, or nothing.

    Library functions take a ``Steps`` so that they stay silent when called from
    Python and show progress when called from the CLI: a live (transient) display on
    ``progress`` while a step runs, and one ``✓ step (seconds)`` line on ``log`` when
    it is done.  Keeping the finished lines off the live console means that a failure
    leaves exactly one error line on stderr.
    """

    def __init__(self, progress: Progress | None = None, log: Console | None = None):
        self.progress = progress
        self.log = log

    def note(self, message: str) -> None:
        """One line for the user (nothing when silent)."""
        if self.log is not None:
            self.log.print(message, highlight=False)

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """Context for one step; yields ``advance(n=1, rate="")`` for steps with a ``total``."""
        start = time.perf_counter()
        if self.progress is None:
            yield lambda n=1, rate="": None
        else:
            task = self.progress.add_task(description, total=total, rate="")
            try:
                yield lambda n=1, rate="": self.progress.update(task, advance=n, rate=rate)
            finally:
                self.progress.remove_task(task)
        if self.log is not None:
            self.log.print(f"[green]✓[/] {description} ({time.perf_counter() - start:.1f}s)", highlight=False)
