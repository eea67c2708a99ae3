"""The ``longzoo`` command line: thin typer wrappers over library functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from longzoo.errors import LongzooError

app = typer.Typer(
    name="longzoo",
    help="Turn short-context encoders into long-context Longformer models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console(soft_wrap=True)




def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal
    )


@app.callback()
def main() -> None:
    """longzoo: long-context Longformer models from short encoders."""


@app.command()
def convert(
    base: Annotated[str, typer.Option("--base", help="Hub id or local folder of the short model.")],
    max_pos: Annotated[int, typer.Option("--max-pos", help="Positions of the long model, e.g. 4096.")],
    attention_window: Annotated[
        Optional[int], typer.Option("--attention-window", help="Window over both sides (even); default min(512, max-pos).")
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder; default ./<base>-longformer-<max-pos>.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit.")] = None,
    position_init: Annotated[str, typer.Option("--position-init", help="copy (default) or interpolate.")] = "copy",
    dtype: Annotated[str, typer.Option("--dtype", help="float32 (default), float16 or bfloat16.")] = "float32",
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Read pytorch_model.bin (weights_only) when no safetensors exist.")
    ] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the parity check against the base.")] = False,
) -> None:
    """Convert a BERT / RoBERTa / XLM-R / CamemBERT checkpoint into a Longformer."""
    from transformers.utils import logging as hf_logging

    from longzoo.converters import convert as run_convert
    from longzoo.progress import Steps

    hf_logging.disable_progress_bar()  # our own progress shows the steps

    try:
        with _progress() as progress:
            result = run_convert(
                base,
                max_pos,
                out_dir,
                attention_window=attention_window,
                force=force,
                revision=revision,
                position_init=position_init,
                dtype=dtype,
                allow_pickle=allow_pickle,
                verify=not no_verify,
                steps=Steps(progress, log=out),
            )
    except LongzooError as exc:
        _fail(str(exc))
    except OSError as exc:  # disk full, permissions changed under us: still the user's to fix
        _fail(f"{exc.filename or 'output'}: {exc.strerror or exc}")
    _print_summary(result)


def _print_summary(result) -> None:
    record = result.manifest["convert"]
    keys = record["keys"]
    out.print(f"[bold]{result.architecture}[/] with {record['max_positions']} positions, window {record['attention_window']}")
    out.print(
        f"keys: {keys['mapped']} mapped, {len(keys['generated'])} generated, "
        f"{len(keys['tied'])} tied, {len(keys['dropped'])} dropped"
    )
    for key, reason in keys["dropped"].items():
        out.print(f"  dropped {key}: {reason}", highlight=False)
    parity = result.parity
    if parity is None:
        out.print("[yellow]parity: not checked (--no-verify)[/]")
    else:
        out.print(
            f"parity at {parity['length']} tokens: max |Δ{parity['compared']}| = {parity['max_abs_diff']:.2e}, "
            f"with global attention on token 0 = {parity['max_abs_diff_global']:.2e} "
            f"(tolerance {parity['tolerance']:g}) [bold green]passed[/]"
        )
        full = parity["full_length"]
        out.print(f"full-length run: {full['tokens']} tokens in {full['seconds']:.1f} s, outputs finite")
    out.print(f"wrote {result.out}")


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run()
