"""The ``longzoo`` command line: thin typer wrappers over library functions."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from longzoo.choices import Attention, Baseline, DType, GlobalAttention, PositionInit, Task, Wwm
from longzoo.errors import LongzooError

err = Console(stderr=True)
out = Console(soft_wrap=True)
_LOG = Console(soft_wrap=True)  # step-by-step lines, which -q silences
# Errors raised inside these libraries while they read the user's files are the user's to fix.
_LIBRARIES = ("transformers", "safetensors", "tokenizers", "huggingface_hub", "datasets", "accelerate", "jieba")


def _fail(message: str, code: int = 1) -> None:
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
    Attention, typer.Option("--attention", help="fast (exact, blocked SDPA) or transformers' reference.")
]
WwmOption = Annotated[Wwm, typer.Option("--wwm", help="Whole-word masking: auto, jieba or none.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (data order, masks, new heads).")]
LrOption = Annotated[float, typer.Option("--lr", help="Peak learning rate (linear schedule).")]
GradAccumOption = Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")]

app = typer.Typer(
    name="longzoo",
    help="Turn short-context encoders into long-context Longformer models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_OneLineErrors,
)


def _quiet_transformers() -> None:
    """transformers' own bars ("Loading weights") would interleave with ours and with errors."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
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
    """longzoo: long-context Longformer models from short encoders."""
    from longzoo.converters.source import check_endpoint_variable

    check_endpoint_variable()  # a malformed HF_ENDPOINT breaks importing transformers itself
    from transformers.utils import logging as hf_logging

    # longzoo reports what matters itself; transformers' warnings (padding to the window, ...)
    # would stand between its lines and beside an error line.  -v shows them, and more.
    hf_logging.set_verbosity_info() if verbose else hf_logging.set_verbosity_error()
    _LOG.quiet = quiet


@app.command(epilog="Example: longzoo convert --base hfl/chinese-roberta-wwm-ext --max-pos 4096 --out roberta-zh-4096")
def convert(
    base: Annotated[str, typer.Option("--base", help="Hub id or local folder of the short model.")],
    max_pos: Annotated[
        Optional[int], typer.Option("--max-pos", help="Positions of the long model, e.g. 4096 (kept for a long base).")
    ] = None,
    attention_window: Annotated[
        Optional[int],
        typer.Option("--attention-window", help="Window over both sides (even); default min(512, max-pos)."),
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Output folder; default ./<base>-longformer-<max-pos>.")
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
    """Convert a BERT / RoBERTa / XLM-R / CamemBERT checkpoint into a Longformer."""
    from longzoo.converters import convert as run_convert
    from longzoo.progress import Steps

    _quiet_transformers()

    with _progress() as progress:
        result = run_convert(
            base,
            max_pos,
            out_dir,
            attention_window=attention_window,
            force=force,
            revision=revision,
            position_init=position_init.value,
            dtype=dtype.value,
            allow_pickle=allow_pickle,
            verify=not no_verify,
            steps=Steps(progress, log=_LOG),
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
            steps=Steps(progress, log=_LOG),
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


@app.command(
    epilog="Example: longzoo pretrain roberta-zh-4096 --corpus peoples-daily-1998 --out roberta-zh-4096-pre --max-steps 3000 --bf16"
)
def pretrain(
    model_dir: Annotated[Path, typer.Argument(help="A converted Longformer folder.")],
    corpus: Annotated[
        list[str], typer.Option("--corpus", help="Text file, .jsonl, folder or Hub dataset; repeatable.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (checkpoints and cache live inside).")],
    seq_len: Annotated[
        Optional[int], typer.Option("--seq-len", help="Tokens per sequence; default: the model's length.")
    ] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per device per micro-batch.")] = 1,
    grad_accum: GradAccumOption = 8,
    lr: LrOption = 3e-5,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Warmup steps; default min(500, steps/10).")] = None,
    wwm: WwmOption = Wwm.auto,
    mlm_prob: Annotated[float, typer.Option("--mlm-prob", help="Share of tokens to predict.")] = 0.15,
    eval_corpus: Annotated[
        Optional[list[str]], typer.Option("--eval-corpus", help="Held-out text, evaluated before and after.")
    ] = None,
    bf16: Annotated[bool, typer.Option("--bf16", metavar="", help="bfloat16 mixed precision.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", metavar="", help="float16 mixed precision.")] = False,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", metavar="", help="Recompute activations to save memory.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue from the newest complete checkpoint.")
    ] = False,
    force: ForceOption = False,
    seed: SeedOption = 42,
    global_attention: Annotated[
        GlobalAttention, typer.Option("--global-attention", help="Train with global attention on [CLS] / <s>.")
    ] = GlobalAttention.none,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N steps.")] = None,
    logging_steps: Annotated[Optional[int], typer.Option("--logging-steps", help="Log every N steps.")] = None,
    attention: AttentionOption = Attention.fast,
) -> None:
    """Continue MLM pretraining on long documents (Trainer; works under torchrun / accelerate)."""
    from longzoo.progress import Steps
    from longzoo.training.pretrain import PretrainOptions
    from longzoo.training.pretrain import pretrain as run_pretrain

    _quiet_transformers()

    options = PretrainOptions(
        seq_len=seq_len,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        warmup=warmup,
        wwm=wwm.value,
        mlm_prob=mlm_prob,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=gradient_checkpointing,
        seed=seed,
        global_attention=global_attention.value,
        save_steps=save_steps,
        logging_steps=logging_steps,
        attention=attention.value,
    )
    result = run_pretrain(
        model_dir,
        corpus,
        out_dir,
        eval_corpora=eval_corpus,
        resume=resume,
        force=force,
        options=options,
        steps=Steps(None, log=_LOG),
    )
    if result.manifest:
        loss = "not logged" if result.train_loss is None else f"{result.train_loss:.4f}"
        out.print(f"trained {result.steps} steps, mean train loss {loss}")
        _print_eval_change(result.eval_before, result.eval_after)
        out.print(f"wrote {result.out}")


@app.command(
    epilog="Example: longzoo finetune roberta-zh-4096-pre --train train.jsonl --eval eval.jsonl --out clf --baseline truncate --base hfl/chinese-roberta-wwm-ext"
)
def finetune(
    model_dir: Annotated[Path, typer.Argument(help="A converted (or pretrained) Longformer folder.")],
    train: Annotated[Path, typer.Option("--train", help="Training documents: .jsonl or .csv.")],
    eval_file: Annotated[Path, typer.Option("--eval", help="Evaluation documents: .jsonl or .csv.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder for the fine-tuned long model.")],
    task: Annotated[Task, typer.Option("--task", help="What to fine-tune for.")] = Task.classification,
    text_field: Annotated[str, typer.Option("--text-field", help="Field (column) holding the text.")] = "text",
    label_field: Annotated[
        str, typer.Option("--label-field", help="Field holding the label, or a list of labels.")
    ] = "label",
    multi_label: Annotated[
        bool, typer.Option("--multi-label", metavar="", help="Several labels per document (CSV cells split on '|').")
    ] = False,
    max_len: Annotated[
        Optional[int], typer.Option("--max-len", help="Tokens the long model reads; default: its length.")
    ] = None,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the training file.")] = 3.0,
    lr: LrOption = 3e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per micro-batch.")] = 4,
    grad_accum: GradAccumOption = 1,
    baseline: Annotated[
        Optional[list[Baseline]], typer.Option("--baseline", help="Short-model baseline; repeatable, trained alike.")
    ] = None,
    base: Annotated[
        Optional[str], typer.Option("--base", help="Short model of the baselines; default: the recorded base.")
    ] = None,
    chunk_len: Annotated[
        Optional[int], typer.Option("--chunk-len", help="stride: tokens per chunk; default: the short length.")
    ] = None,
    chunk_overlap: Annotated[
        Optional[int], typer.Option("--chunk-overlap", help="stride: tokens shared by neighbours; default: ¼.")
    ] = None,
    max_chunks: Annotated[
        Optional[int], typer.Option("--max-chunks", help="stride: chunks per document; default: cover --max-len.")
    ] = None,
    baseline_lr: Annotated[Optional[float], typer.Option("--baseline-lr", help="Default: --lr.")] = None,
    seed: SeedOption = 42,
    attention: AttentionOption = Attention.fast,
    force: ForceOption = False,
) -> None:
    """Fine-tune for long-document classification, with truncate / stride baselines in one table."""
    from longzoo.progress import Steps
    from longzoo.training.finetune import FinetuneOptions
    from longzoo.training.finetune import finetune as run_finetune

    _quiet_transformers()
    options = FinetuneOptions(
        task=task.value,
        text_field=text_field,
        label_field=label_field,
        multi_label=multi_label,
        max_len=max_len,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        seed=seed,
        baselines=tuple(b.value for b in baseline or ()),
        chunk_len=chunk_len,
        chunk_overlap=chunk_overlap,
        max_chunks=max_chunks,
        baseline_lr=baseline_lr,
        attention=attention.value,
    )
    result = run_finetune(
        model_dir, train, eval_file, out_dir, options=options, base=base, force=force, steps=Steps(None, log=_LOG)
    )
    out.print("| model | tokens | accuracy | macro F1 | micro F1 |", highlight=False)
    out.print("|---|---|---|---|---|", highlight=False)
    for system, metrics in result.results.items():
        out.print(
            f"| {system} | {metrics['tokens']} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} "
            f"| {metrics['micro_f1']:.4f} |",
            highlight=False,
        )
    out.print(f"wrote {result.out}")


@app.command("eval", epilog="Example: longzoo eval roberta-zh-4096-pre --corpus held-out.txt")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Any MLM folder: a short base, a conversion, a pretrained model.")],
    corpus: Annotated[list[str], typer.Option("--corpus", help="Held-out text; repeatable.")],
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Window; default: the model's length.")] = None,
    wwm: WwmOption = Wwm.auto,
    attention: AttentionOption = Attention.fast,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object.")] = False,
) -> None:
    """Masked-LM loss, bits per token and per character, and accuracy on held-out text."""
    import json

    from longzoo.evaluation.mlm import evaluate as run_evaluate
    from longzoo.evaluation.mlm import record_evaluation

    _quiet_transformers()

    metrics = run_evaluate(model_dir, corpus, seq_len=seq_len, wwm=wwm.value, attention=attention.value)
    recorded = record_evaluation(model_dir, corpus, metrics)
    if as_json:
        print(json.dumps(metrics, ensure_ascii=False))
        return
    out.print(
        f"loss {metrics['loss']:.4f}  bits/token {metrics['bpc']:.4f}  bits/char {metrics['bits_per_char']:.4f}  "
        f"MLM accuracy {metrics['mlm_accuracy']:.4f}  ({metrics['predicted']:,} predicted of {metrics['tokens']:,} tokens, "
        f"{metrics['characters']:,} characters, window {metrics['window']}, masking {metrics['wwm']})",
        highlight=False,
    )
    if recorded:
        out.print(f"recorded in {model_dir / 'longzoo.json'} and the card")


@app.command(epilog="Example: longzoo mask roberta-zh-4096 --text 我爱北京天安门")
def mask(
    model_dir: Annotated[Path, typer.Argument(help="Folder whose tokenizer to use.")],
    text: Annotated[str, typer.Option("--text", help="Text to mask.")],
    wwm: WwmOption = Wwm.auto,
    seed: SeedOption = 0,
    mlm_prob: Annotated[float, typer.Option("--mlm-prob", help="Share of tokens to select.")] = 0.15,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help='Print {"tokens": [...], "masked": [0/1, ...]}.')
    ] = False,
) -> None:
    """Show which tokens the masking selects for prediction."""
    import json

    from longzoo.data.masking import show_mask

    tokens, selected, mode = show_mask(model_dir, text, wwm=wwm.value, seed=seed, mlm_prob=mlm_prob)
    if as_json:
        print(json.dumps({"tokens": tokens, "masked": [int(s) for s in selected]}, ensure_ascii=False))
        return
    from rich.text import Text

    shown = Text()
    for token, chosen in zip(tokens, selected, strict=True):
        shown.append(token, style="bold reverse" if chosen else "")
        shown.append(" ")
    out.print(shown)
    out.print(f"{sum(selected)} of {len(tokens)} tokens selected (segmenter: {mode})")


zoo_app = typer.Typer(help="Ready recipes: list, show, build.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list", epilog="Example: longzoo zoo list --json")
def zoo_list(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print every recipe as one JSON list.")] = False,
) -> None:
    """The recipes: name, base, positions, languages (`zoo show NAME` for everything)."""
    import dataclasses
    import json

    from rich import box
    from rich.table import Table

    from longzoo.zoo.registry import RECIPES

    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in RECIPES.values()], indent=2, ensure_ascii=False))
        return
    # Four short columns fit 80 characters; a pipe gets plain rows without box drawing.
    table = Table(box=box.SIMPLE if out.is_terminal else None)
    for column in ("name", "base", "positions", "languages"):
        table.add_column(column, overflow="fold")  # wrap long ids rather than cut them
    for recipe in RECIPES.values():
        table.add_row(recipe.name, recipe.base, str(recipe.max_positions), ",".join(recipe.languages))
    out.print(table)


@zoo_app.command("show", epilog="Example: longzoo zoo show roberta-zh-4096")
def zoo_show(name: Annotated[str, typer.Argument(help="Recipe name, e.g. roberta-zh-4096.")]) -> None:
    """Everything a recipe fixes, as JSON."""
    import dataclasses
    import json

    from longzoo.zoo.registry import get_recipe

    recipe = get_recipe(name)
    print(json.dumps(dataclasses.asdict(recipe), indent=2, ensure_ascii=False))


@zoo_app.command("build", epilog="Example: longzoo zoo build minilm-4096 --max-steps 100")
def zoo_build(
    name: Annotated[str, typer.Argument(help="Recipe name.")],
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Replaces the recipe's corpus.")] = None,
    eval_corpus: Annotated[Optional[list[str]], typer.Option("--eval-corpus", help="Held-out text.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Replaces the recipe's steps.")] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Training length; default the recipe's.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Build folder; default ./NAME.")] = None,
    push_to: Annotated[Optional[str], typer.Option("--push", help="Publish the result as OWNER/NAME.")] = None,
) -> None:
    """convert -> pretrain -> eval -> card (-> push), resumable where it stopped."""
    from longzoo.progress import Steps
    from longzoo.zoo.build import build

    _quiet_transformers()
    result = build(
        name,
        out=out_dir,
        corpora=corpus,
        eval_corpora=eval_corpus,
        max_steps=max_steps,
        seq_len=seq_len,
        push_to=push_to,
        steps=Steps(None, log=_LOG),
    )
    if result.skipped:
        out.print(f"already done, skipped: {', '.join(result.skipped)}")
    _print_eval_change(result.eval_before, result.eval_after)
    out.print(f"built {result.pretrained}")
    if result.repo_url:
        out.print(result.repo_url)


def _print_eval_change(before: dict | None, after: dict | None) -> None:
    if before and after:
        out.print(
            f"eval bits/token {before['bpc']:.4f} -> {after['bpc']:.4f}, MLM accuracy "
            f"{before['mlm_accuracy']:.4f} -> {after['mlm_accuracy']:.4f}"
        )


def _print_summary(result) -> None:
    record = result.manifest["convert"]
    keys = record["keys"]
    out.print(
        f"[bold]{result.architecture}[/] with {record['max_positions']} positions, window {record['attention_window']}"
    )
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
        global_diff = parity["max_abs_diff_global"]
        global_text = "not compared (trained global projections)" if global_diff is None else f"{global_diff:.2e}"
        out.print(
            f"parity at {parity['length']} tokens: max |Δ{parity['compared']}| = {parity['max_abs_diff']:.2e}, "
            f"with global attention on token 0 = {global_text} "
            f"(tolerance {parity['tolerance']:g}) [bold green]passed[/]"
        )
        full = parity["full_length"]
        out.print(f"full-length run: {full['tokens']} tokens in {full['seconds']:.1f} s, outputs finite")
    for problem in result.card_problems:
        out.print(
            f"[yellow]card:[/] {problem}; fix it with `longzoo card {result.out}` before pushing", highlight=False
        )
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
