"""``longzoo convert``, ``card`` and ``push``: making and publishing model folders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from longzoo.choices import AttentionForm, DType, PositionInit
from longzoo.cli._app import (
    ForceOption,
    app,
    no_library_bars,
    out,
    progress_display,
    steps_log,
)


@app.command(epilog="Example: longzoo convert --base hfl/chinese-roberta-wwm-ext --max-pos 4096 --out roberta-zh-4096")
def convert(
    base: Annotated[str, typer.Option("--base", help="Hub id or local folder of the short model.")],
    max_pos: Annotated[
        Optional[int], typer.Option("--max-pos", help="Positions of the long model, e.g. 4096 (kept for a long base).")
    ] = None,
    attention: Annotated[
        AttentionForm,
        typer.Option(
            "--attention",
            help="longformer: transformers' Longformer (sliding window + global tokens); "
            "full: the base's own architecture with more positions (SDPA/flash attention over all tokens).",
        ),
    ] = AttentionForm.longformer,
    attention_window: Annotated[
        Optional[int],
        typer.Option("--attention-window", help="Longformer window over both sides (even); default min(512, max-pos)."),
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder; default ./<base>-<attention>-<max-pos>.")
    ] = None,
    force: ForceOption = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Hub branch, tag or commit.")] = None,
    position_init: Annotated[
        PositionInit, typer.Option("--position-init", help="Tile the base table (copy) or stretch it.")
    ] = PositionInit.copy,
    dtype: Annotated[DType, typer.Option("--dtype", help="Stored precision; parity runs in float32.")] = DType.float32,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle", metavar="", help="Read pytorch_model.bin (weights_only) when no safetensors exist."
        ),
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", metavar="", help="Skip the parity check against the base.")
    ] = False,
) -> None:
    """Convert a BERT / RoBERTa / XLM-R / CamemBERT checkpoint into a long model (Longformer or full attention)."""
    from longzoo.converters import convert as run_convert
    from longzoo.progress import Steps

    no_library_bars()

    with progress_display() as progress:
        result = run_convert(
            base,
            max_pos,
            out_dir,
            attention=attention.value,
            attention_window=attention_window,
            force=force,
            revision=revision,
            position_init=position_init.value,
            dtype=dtype.value,
            allow_pickle=allow_pickle,
            verify=not no_verify,
            steps=Steps(progress, log=steps_log),
        )
    _print_summary(result)


@app.command(epilog="Example: longzoo card roberta-zh-4096 --language zh --license apache-2.0")
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
    from longzoo.cards.render import MissingLicenseError

    kwargs = dict(language=language or None, license=license, model_name=model_name, base_model=base_model)
    try:
        rendered = render_card(model_dir, **kwargs)
    except MissingLicenseError:
        # a person at a terminal is asked; scripts get the one-line error
        if not sys.stdin.isatty():
            raise
        kwargs["license"] = typer.prompt("The base model's card names no license. License id (e.g. apache-2.0)")
        rendered = render_card(model_dir, **kwargs)
    meta = rendered.metadata
    out.print(f"wrote {rendered.path}")
    out.print(
        f"license {meta.get('license')}, language {', '.join(meta.get('language') or []) or '-'}, "
        f"pipeline {meta.get('pipeline_tag')}, tags {', '.join(meta.get('tags') or [])}",
        highlight=False,
    )


@app.command(epilog="Example: longzoo push roberta-zh-4096 --repo-id you/roberta-zh-4096 --dry-run")
def push(
    model_dir: Annotated[Path, typer.Argument(help="The model folder to publish.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="OWNER/NAME on the Hub.")],
    private: Annotated[bool, typer.Option("--private", metavar="", help="Create the repository as private.")] = False,
    revision: Annotated[
        Optional[str], typer.Option("--revision", help="Branch to commit to (created if missing).")
    ] = None,
    create_pr: Annotated[
        bool, typer.Option("--create-pr", metavar="", help="Open a pull request instead of committing.")
    ] = False,
    commit_message: Annotated[Optional[str], typer.Option("--commit-message", help="Commit message.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="List what would be uploaded; send nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", metavar="", help="Push despite a failed/unverified parity check or card problems."),
    ] = False,
) -> None:
    """Publish a model folder to the Hugging Face Hub in one commit."""
    from longzoo.hub import push as run_push
    from longzoo.progress import Steps

    with progress_display() as progress:
        result = run_push(
            model_dir,
            repo_id,
            private=private,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message,
            dry_run=dry_run,
            force=force,
            steps=Steps(progress, log=steps_log),
        )
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
    record = result.manifest.convert
    keys = record.keys
    shape = "full attention" if record.attention_window is None else f"window {record.attention_window}"
    out.print(f"[bold]{result.architecture}[/] with {record.max_positions} positions, {shape}")
    out.print(
        f"keys: {keys.mapped} mapped, {len(keys.generated)} generated, "
        f"{len(keys.tied)} tied, {len(keys.dropped)} dropped"
    )
    for key, reason in keys.dropped.items():
        out.print(f"  dropped {key}: {reason}", highlight=False)
    if record.sentence_modules:
        out.print(
            f"sentence-transformers modules kept: {', '.join(record.sentence_modules)} "
            f"(max_seq_length {record.max_positions})"
        )
    parity = result.parity
    if parity is None:
        out.print("[yellow]parity: not checked (--no-verify)[/]")
    else:
        global_diff = parity.max_abs_diff_global
        if record.attention == AttentionForm.full:
            global_text = f"attention {parity.attn_implementation}"
        elif global_diff is None:
            global_text = "with global attention on token 0 not compared (trained global projections)"
        else:
            global_text = f"with global attention on token 0 = {global_diff:.2e}"
        out.print(
            f"parity at {parity.length} tokens: max |Δ{parity.compared}| = {parity.max_abs_diff:.2e}, "
            f"{global_text} (tolerance {parity.tolerance:g}) [bold green]passed[/]"
        )
        full = parity.full_length
        out.print(f"full-length run: {full.tokens} tokens in {full.seconds:.1f} s, outputs finite")
    for problem in result.card_problems:
        out.print(
            f"[yellow]card:[/] {problem}; fix it with `longzoo card {result.out}` before pushing", highlight=False
        )
    out.print(f"wrote {result.out}")
