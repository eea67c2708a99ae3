"""The app, its one error handler and the options several command groups share."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from longzoo.choices import Attention, Wwm
from longzoo.errors import LongzooError

err = Console(stderr=True)
out = Console(soft_wrap=True)
steps_log = Console(soft_wrap=True)  # step-by-step lines, which -q silences
# Errors raised inside these libraries while they read the user's files are the user's to fix.
_LIBRARIES = ("transformers", "safetensors", "tokenizers", "huggingface_hub", "datasets", "accelerate", "jieba")


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _library_of(exc: BaseException) -> str | None:
    """The library an exception was raised in (by its type or its innermost frame), if one of ours."""
    module = type(exc).__module__.split(".")[0]
    if module.removesuffix("_rust") in _LIBRARIES:
        return module
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return next((lib for lib in _LIBRARIES if f"{os.sep}{lib}{os.sep}" in filename), None)


def _is_click(exc: BaseException, name: str) -> bool:
    """``exc`` is click's exception ``name``, from click itself or the copy newer typers vendor."""
    return any(cls.__name__ == name and "click" in cls.__module__ for cls in type(exc).__mro__)


def error_line(exc: BaseException) -> str | None:
    """The one line a user sees for ``exc``, or None for a bug in longzoo (keeps its traceback)."""
    if isinstance(exc, LongzooError):
        return str(exc)
    if _is_click(exc, "UsageError"):
        command = exc.ctx.command_path if exc.ctx is not None else "longzoo"
        return f"{_first_line(exc.format_message())} (see `{command} --help`)"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{exc.filename or 'output'}: no space left on the device; free some space and run again"
    if isinstance(exc, OSError):
        return f"{exc.filename or 'file system'}: {exc.strerror or _first_line(exc)}"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc):
        return "out of memory; try a smaller batch or a shorter sequence length"
    library = _library_of(exc)
    if library is not None:
        return f"{library} could not use the given files or values ({type(exc).__name__}: {_first_line(exc)})"
    return None


class _OneLineErrors(TyperGroup):
    """Every error a user can cause ends as one ``error:`` line and a non-zero exit.

    Set ``LONGZOO_DEBUG=1`` to see the traceback instead.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with warnings.catch_warnings():
                # Library warnings are not ours to show (they would stand beside an error line).
                warnings.simplefilter("ignore")
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
            if _is_click(exc, "NoArgsIsHelpError"):
                exc.show()  # a bare `longzoo` or `longzoo zoo` shows its help
                return self._exit(2, standalone_mode)
            if _is_click(exc, "Abort"):
                err.print("interrupted")
                return self._exit(130, standalone_mode)
            line = None if os.environ.get("LONGZOO_DEBUG") else error_line(exc)
            if line is None:
                raise
            err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            code = 1
        return self._exit(code, standalone_mode)

    @staticmethod
    def _exit(code, standalone_mode: bool):
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


# Options that several commands share, declared once (huggingface_hub's CLI does the same).
ForceOption = Annotated[
    bool,
    typer.Option("--force", metavar="", help="Replace a non-empty output folder that longzoo wrote (never an input)."),
]
AttentionOption = Annotated[
    Attention,
    typer.Option(
        "--attention",
        help="Longformer attention: fast (exact, blocked SDPA) or transformers' reference; "
        "a full-attention model always runs transformers' SDPA.",
    ),
]
WwmOption = Annotated[Wwm, typer.Option("--wwm", help="Whole-word masking: auto, jieba or none.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (data order, masks, new heads).")]
# Training options are the fields of longzoo's TrainingArguments, by the same names; the
# short spellings people type are aliases of transformers' long ones.
LrOption = Annotated[float, typer.Option("--lr", "--learning-rate", help="Peak learning rate (linear schedule).")]
GradAccumOption = Annotated[
    int, typer.Option("--grad-accum", "--gradient-accumulation-steps", help="Micro-batches per optimizer step.")
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", "--per-device-train-batch-size", help="Sequences per device per micro-batch.")
]


def training_arguments(cls, values: dict):
    """``cls`` (a TrainingArguments subclass) from the command's parameters named after its fields."""
    import dataclasses
    from enum import Enum

    def plain(value):
        if isinstance(value, Enum):
            return value.value
        return tuple(plain(v) for v in value) if isinstance(value, list) else value

    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{name: plain(value) for name, value in values.items() if name in names and value is not None})


app = typer.Typer(
    name="longzoo",
    help="Turn short-context encoders into long-context models (Longformer or full attention).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
)


def no_library_bars() -> None:
    """transformers' own bars ("Loading weights") would interleave with ours and with errors."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class _Counted(ProgressColumn):
    """``column`` for a step with a total (training steps); nothing for the others."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task):
        return self.column.render(task) if task.total is not None else Text("")


def progress_display() -> Progress:
    """The live display of a command's steps; a step with a total gets a bar, its rate and the time left."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        _Counted(BarColumn(bar_width=24)),
        _Counted(MofNCompleteColumn()),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        _Counted(TextColumn("left")),
        _Counted(TimeRemainingColumn()),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _show_version(value: bool) -> None:
    if value:
        from longzoo import __version__

        out.print(f"longzoo {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", help="Show longzoo's version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", metavar="", help="Results and errors only: no step-by-step lines.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar="", help="Library warnings and informational logs too.")
    ] = False,
) -> None:
    """longzoo: long-context models (Longformer or full attention) from short encoders."""
    from longzoo.converters.source import check_endpoint_variable

    check_endpoint_variable()  # a malformed HF_ENDPOINT breaks importing transformers itself
    from transformers.utils import logging as hf_logging

    # longzoo reports what matters itself; transformers' warnings (padding to the window, ...)
    # would stand between its lines and beside an error line.  -v shows them, and more.
    hf_logging.set_verbosity_info() if verbose else hf_logging.set_verbosity_error()
    steps_log.quiet = quiet


def print_eval_change(before: dict | None, after: dict | None) -> None:
    if before and after:
        out.print(
            f"eval bits/token {before['bpc']:.4f} -> {after['bpc']:.4f}, MLM accuracy "
            f"{before['mlm_accuracy']:.4f} -> {after['mlm_accuracy']:.4f}"
        )


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
