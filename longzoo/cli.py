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


@app.command()
def card(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by longzoo (with longzoo.json).")],
    language: Annotated[
        Optional[list[str]], typer.Option("--language", help="ISO 639 code; repeat for several (zh, en, ...).")
    ] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="Hub licence id, e.g. apache-2.0.")] = None,
    model_name: Annotated[Optional[str], typer.Option("--model-name", help="Name shown on the card.")] = None,
    base_model: Annotated[
        Optional[str], typer.Option("--base-model", help="Hub id of the base, when it was converted from a local copy.")
    ] = None,
) -> None:
    """Render README.md (the model card) from longzoo.json."""
    from longzoo.cards import render_card

    kwargs = dict(language=language or None, license=license, model_name=model_name, base_model=base_model)
    try:
        try:
            rendered = render_card(model_dir, **kwargs)
        except LongzooError as exc:
            # "asked for": a person at a terminal is asked; scripts get the one-line error
            if "no license" not in str(exc) or not sys.stdin.isatty():
                raise
            kwargs["license"] = typer.prompt("The base model's card names no license. License id (e.g. apache-2.0)")
            rendered = render_card(model_dir, **kwargs)
    except LongzooError as exc:
        _fail(str(exc))
    meta = rendered.metadata
    out.print(f"wrote {rendered.path}")
    out.print(
        f"license {meta.get('license')}, language {', '.join(meta.get('language') or []) or '-'}, "
        f"pipeline {meta.get('pipeline_tag')}, tags {', '.join(meta.get('tags') or [])}",
        highlight=False,
    )


@app.command()
def push(
    model_dir: Annotated[Path, typer.Argument(help="The model folder to publish.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="OWNER/NAME on the Hub.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch to commit to (created if missing).")] = None,
    create_pr: Annotated[bool, typer.Option("--create-pr", help="Open a pull request instead of committing.")] = False,
    commit_message: Annotated[Optional[str], typer.Option("--commit-message", help="Commit message.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be uploaded; send nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Push despite a failed/unverified parity check or card problems.")] = False,
) -> None:
    """Publish a model folder to the Hugging Face Hub in one commit."""
    from longzoo.progress import Steps
    from longzoo.publish import push as run_push

    try:
        with _progress() as progress:
            result = run_push(
                model_dir,
                repo_id,
                private=private,
                revision=revision,
                create_pr=create_pr,
                commit_message=commit_message,
                dry_run=dry_run,
                force=force,
                steps=Steps(progress, log=out),
            )
    except LongzooError as exc:
        _fail(str(exc))
    total = sum(size for _, size in result.files)
    if dry_run:
        out.print(f"would upload {len(result.files)} files ({total / 2**20:.1f} MiB) to {result.repo_url}:")
        for path, size in result.files:
            out.print(f"  {path}  {size:,} bytes", highlight=False)
        return
    out.print(f"uploaded {len(result.files)} files ({total / 2**20:.1f} MiB)")
    if result.pr_url:
        out.print(f"pull request: {result.pr_url}")
    out.print(result.repo_url)


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
    for problem in result.card_problems:
        out.print(f"[yellow]card:[/] {problem}; fix it with `longzoo card {result.out}` before pushing", highlight=False)
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
