"""``longzoo pretrain``, ``finetune``, ``eval`` and ``mask``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from longzoo.choices import Attention, Baseline, GlobalAttention, Precision, ReportTo, Task, Wwm
from longzoo.cli._app import (
    AttentionOption,
    BatchSizeOption,
    ForceOption,
    GradAccumOption,
    LrOption,
    SeedOption,
    WwmOption,
    app,
    no_library_bars,
    out,
    print_eval_change,
    progress_display,
    steps_log,
    training_arguments,
)
from longzoo.training.defaults import FINETUNE, PRETRAIN


@app.command(
    epilog="Example: longzoo pretrain roberta-zh-4096 --corpus peoples-daily-1998 --out roberta-zh-4096-pre --max-steps 3000 --bf16"
)
def pretrain(
    model_dir: Annotated[Path, typer.Argument(help="A converted long model folder (Longformer or full attention).")],
    corpus: Annotated[
        list[str], typer.Option("--corpus", help="Text file, .jsonl, folder or Hub dataset; repeatable.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (checkpoints and cache live inside).")],
    seq_len: Annotated[
        Optional[int], typer.Option("--seq-len", help="Tokens per sequence; default: the model's length.")
    ] = None,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Optimizer steps.")] = PRETRAIN["max_steps"],
    per_device_train_batch_size: BatchSizeOption = PRETRAIN["per_device_train_batch_size"],
    gradient_accumulation_steps: GradAccumOption = PRETRAIN["gradient_accumulation_steps"],
    learning_rate: LrOption = PRETRAIN["learning_rate"],
    warmup_steps: Annotated[
        Optional[int], typer.Option("--warmup", "--warmup-steps", help="Warmup steps; default min(500, steps/10).")
    ] = None,
    wwm: WwmOption = Wwm.auto,
    mlm_probability: Annotated[
        float, typer.Option("--mlm-prob", "--mlm-probability", help="Share of tokens to predict.")
    ] = PRETRAIN["mlm_probability"],
    eval_corpus: Annotated[
        Optional[list[str]], typer.Option("--eval-corpus", help="Held-out text, evaluated before and after.")
    ] = None,
    eval_split: Annotated[
        Optional[float],
        typer.Option("--eval-split", help="Hold out this share of the training documents (0-1) as the eval corpus."),
    ] = None,
    num_proc: Annotated[
        Optional[int], typer.Option("--num-proc", help="Processes tokenizing the corpus; default: the cores available.")
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option("--precision", help="auto: bf16 mixed precision where the hardware runs it natively, else fp32."),
    ] = Precision.auto,
    bf16: Annotated[bool, typer.Option("--bf16", metavar="", help="Same as --precision bf16.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", metavar="", help="Same as --precision fp16 (CUDA only).")] = False,
    report_to: Annotated[
        ReportTo, typer.Option("--report-to", help="Also log to TensorBoard or Weights & Biases.")
    ] = ReportTo.none,
    activation_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", metavar="", help="Recompute activations to save memory.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue from the newest complete checkpoint.")
    ] = False,
    force: ForceOption = False,
    seed: SeedOption = PRETRAIN["seed"],
    attention_dropout: Annotated[
        Optional[float],
        typer.Option(
            "--attention-dropout", help="Attention dropout while pretraining (the saved config keeps its own)."
        ),
    ] = 0.0,
    global_attention: Annotated[
        GlobalAttention,
        typer.Option("--global-attention", help="Train with global attention on [CLS] / <s> (Longformer only)."),
    ] = GlobalAttention.none,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N steps.")] = None,
    logging_steps: Annotated[Optional[int], typer.Option("--logging-steps", help="Log every N steps.")] = None,
    attention: AttentionOption = Attention.fast,
) -> None:
    """Continue MLM pretraining on long documents (Trainer; works under torchrun / accelerate)."""
    from longzoo.progress import Steps
    from longzoo.training.arguments import PretrainArguments
    from longzoo.training.pretrain import pretrain as run_pretrain

    no_library_bars()

    args = training_arguments(PretrainArguments, locals())
    with progress_display() as progress:  # live only at a terminal: steps, tokens/s, time left
        result = run_pretrain(
            model_dir,
            corpus,
            out_dir,
            eval_corpora=eval_corpus,
            resume=resume,
            force=force,
            args=args,
            steps=Steps(progress, log=steps_log),
        )
    if result.manifest:
        loss = "not logged" if result.train_loss is None else f"{result.train_loss:.4f}"
        out.print(f"trained {result.steps} steps, mean train loss {loss}")
        print_eval_change(result.eval_before, result.eval_after)
        out.print(f"wrote {result.out}")


@app.command(
    epilog="Example: longzoo finetune roberta-zh-4096-pre --train train.jsonl --eval eval.jsonl --out clf --baseline truncate --base hfl/chinese-roberta-wwm-ext"
)
def finetune(
    model_dir: Annotated[Path, typer.Argument(help="A converted (or pretrained) long model folder.")],
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
    num_train_epochs: Annotated[
        float, typer.Option("--epochs", "--num-train-epochs", help="Passes over the training file.")
    ] = FINETUNE["num_train_epochs"],
    learning_rate: LrOption = FINETUNE["learning_rate"],
    per_device_train_batch_size: BatchSizeOption = FINETUNE["per_device_train_batch_size"],
    gradient_accumulation_steps: GradAccumOption = FINETUNE["gradient_accumulation_steps"],
    baselines: Annotated[
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
    baseline_learning_rate: Annotated[
        Optional[float], typer.Option("--baseline-lr", "--baseline-learning-rate", help="Default: --lr.")
    ] = None,
    seed: SeedOption = FINETUNE["seed"],
    attention: AttentionOption = Attention.fast,
    force: ForceOption = False,
) -> None:
    """Fine-tune for long-document classification, with truncate / stride baselines in one table."""
    from longzoo.progress import Steps
    from longzoo.training.arguments import FinetuneArguments
    from longzoo.training.finetune import finetune as run_finetune

    no_library_bars()
    args = training_arguments(FinetuneArguments, locals())
    result = run_finetune(
        model_dir, train, eval_file, out_dir, args=args, base=base, force=force, steps=Steps(None, log=steps_log)
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

    no_library_bars()

    from longzoo.cards.render import check_records

    check_records(model_dir)  # a broken longzoo.json fails now, not after the whole corpus was scored
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
