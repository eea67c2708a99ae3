"""Continued MLM pretraining of a converted long model (either form) on long documents.

Built on transformers' ``Trainer``, so ``torchrun`` and ``accelerate launch`` run it on
many GPUs or nodes unchanged (DDP, or FSDP / DeepSpeed through their config files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from longzoo.cards.render import check_records
from longzoo.converters.adapters import FULL_ATTENTION_IMPLEMENTATION, usable_positions
from longzoo.converters.sentence import copy_sentence_modules, sentence_modules
from longzoo.data.corpus import check_corpus
from longzoo.data.packing import MaskedBlocks
from longzoo.errors import LongzooError
from longzoo.manifest import MANIFEST, add_step, read_manifest, write_manifest
from longzoo.models.folders import attention_form, copy_tokenizer, load_tokenizer, long_config
from longzoo.outputs import (
    RUN_MARKER,
    check_output,
    clean_leftovers,
    normal_permissions,
    output_lock,
    refuse_inputs,
    write_text_atomic,
)
from longzoo.progress import Steps
from longzoo.quiet import quiet_transformers
from longzoo.records import BeforeAfter, CorpusStats, Hyperparameters, LossCurve, Manifest, PretrainRecord
from longzoo.training.arguments import PretrainArguments, override
from longzoo.weights import MLM_HEADS, complete_mlm_head, require_finite

CHECKPOINTS = "checkpoints"
CACHE = "cache"
DATASETS = "datasets"  # under CACHE: the Arrow files of the prepared corpora
LOSS_PLOT = "loss.png"


@dataclass
class PretrainResult:
    out: Path
    steps: int
    train_loss: float | None
    eval_before: dict | None
    eval_after: dict | None
    manifest: Manifest | None = None


def pretrain(
    model_dir: str | Path,
    corpora: list[str],
    out: str | Path,
    *,
    eval_corpora: list[str] | None = None,
    resume: bool = False,
    force: bool = False,
    args: PretrainArguments | None = None,
    callbacks: list | None = None,
    steps: Steps | None = None,
) -> PretrainResult:
    """Continue MLM pretraining of the long model in ``model_dir`` on ``corpora``.

    ``out`` receives a stock-loadable checkpoint (model, tokenizer, ``longzoo.json``,
    card, ``loss.png``) when training ends; while it runs, ``out/checkpoints`` holds
    Trainer checkpoints (``resume=True`` continues from the newest complete one, with the
    same step count and data order) and ``out/cache`` the tokenized, packed corpus.
    Only the first process writes, and it holds the output folder's lock throughout.
    """
    args = args or PretrainArguments()  # checked when it was made
    steps = steps or Steps()
    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser().absolute()
    config = long_config(model_dir)
    if args.global_attention != "none" and attention_form(config, model_dir) == "full":
        raise LongzooError("--global-attention is for Longformer models; with full attention every token sees all")
    tokenizer = load_tokenizer(model_dir, config)
    check_records(model_dir)  # a broken manifest fails now, not after hours of training
    seq_len = _sequence_length(config, args)
    eval_corpora = list(eval_corpora or [])
    _check_corpora(corpora, eval_corpora, args)
    writer = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process writes
    if writer:
        _check_output(out, model_dir, resume, force)  # before anything is prepared: fail fast
    with output_lock(out) if writer else contextlib.nullcontext():
        fresh = writer and not (out.is_dir() and any(out.iterdir()))
        if writer:
            _prepare_output(out, model_dir, resume, force)
        try:
            return _run(model_dir, tokenizer, corpora, out, eval_corpora, resume, args, callbacks, steps, seq_len)
        except BaseException:
            if fresh:
                _remove_if_nothing_to_resume(out)
            raise


def _check_corpora(corpora: list[str], eval_corpora: list[str], args: PretrainArguments) -> None:
    """What can be known of the corpora before the output folder is touched (``--force`` clears it)."""
    if not corpora:
        raise LongzooError("give at least one --corpus")
    if eval_corpora and args.eval_split is not None:
        raise LongzooError("choose --eval-corpus or --eval-split, not both")
    for spec in [*corpora, *eval_corpora]:
        check_corpus(spec)


def _remove_if_nothing_to_resume(out: Path) -> None:
    """A run that failed before its first complete checkpoint leaves no folder behind (it made it)."""
    from longzoo.training.checkpoints import latest_complete_checkpoint

    if latest_complete_checkpoint(out / CHECKPOINTS) is None:
        shutil.rmtree(out, ignore_errors=True)


def _sequence_length(config, args: PretrainArguments) -> int:
    max_positions = usable_positions(config)
    seq_len = args.seq_len or max_positions
    if seq_len > max_positions:
        raise LongzooError(f"--seq-len {seq_len} is above the model's {max_positions} positions")
    return seq_len


def _run(model_dir, tokenizer, corpora, out, eval_corpora, resume, args, callbacks, steps, seq_len):
    """Prepare the corpora, train, evaluate and publish; called with the output folder prepared and locked."""
    from longzoo.training.corpora import prepare

    evaluating = bool(eval_corpora) or args.eval_split is not None
    args = override(args, output_dir=str(out / CHECKPOINTS), eval_strategy="steps" if evaluating else "no")
    model, new_head = _load_mlm(model_dir, args.seed)
    frozen = prepare_model(model, args)

    # one process per machine prepares; the others then find its Arrow files by fingerprint
    with args.main_process_first(desc="preparing the corpus"), steps.step("Tokenizing and packing the corpus"):
        data = prepare(corpora, eval_corpora, tokenizer, model_dir, seq_len, out / CACHE / DATASETS, args, steps)
        if args.process_index == 0 and not resume:
            _clear_previous_run(out)
    if args.process_index == 0:
        _warn_about_the_plan(data, tokenizer, args, steps)
        if sentence_modules(model_dir):
            steps.note(
                "[yellow]warning:[/] this is a sentence-embedding model: MLM pretraining changes its embedding "
                "space, so its embeddings will no longer match the base's (fine-tune or evaluate them afterwards)"
            )
    train_set = _masked(data.train, tokenizer, args, args.seed)
    eval_set = _masked(data.eval, tokenizer, args, args.seed + 1) if data.eval is not None else None
    trainer, progress = _trainer(model, args, train_set, eval_set, steps, callbacks, seq_len)
    main = trainer.is_world_process_zero()
    eval_before = _eval_before(model, tokenizer, data, seq_len, args, out, resume, steps) if main else None

    from longzoo.training.checkpoints import latest_complete_checkpoint

    checkpoint = latest_complete_checkpoint(out / CHECKPOINTS) if resume else None
    if resume and checkpoint is None:
        steps.note("no complete checkpoint to resume from; starting at step 0")
    resumed_from = int(checkpoint.name.split("-")[1]) if checkpoint else None
    started = time.perf_counter()
    with steps.step("Training", total=max(0, args.max_steps - (resumed_from or 0))) as progress.advance:
        train_loss = _train(trainer, checkpoint, args.max_steps)
    seconds = time.perf_counter() - started
    if not main:
        return PretrainResult(out, trainer.state.global_step, train_loss, None, None)

    model = trainer.model
    if args.global_attention == "none" and model.config.model_type == "longformer":
        _copy_global_projections(model)
    model.eval()
    require_finite(model, "the trained model")
    eval_after = None
    if data.eval is not None:
        with steps.step("Evaluating after training"):
            eval_after = _evaluate(model, tokenizer, data, seq_len, args)

    run = dict(
        seq_len=seq_len,
        frozen=frozen,
        new_lm_head=new_head,
        hyperparameters=_hyperparameters(args, seq_len),
        resumed_from=resumed_from,
        train_loss=train_loss,
        seconds=round(seconds, 1),
    )
    evaluations = (eval_before, eval_after)
    record = _record(model, model_dir, trainer, args, data, evaluations, run)
    with steps.step("Saving the pretrained model"):
        manifest = _publish(model, model_dir, out, record)
    return PretrainResult(out, trainer.state.global_step, train_loss, eval_before, eval_after, manifest)


def _masked(blocks, tokenizer, args: PretrainArguments, seed: int) -> MaskedBlocks:
    global_cls = args.global_attention == "cls"
    return MaskedBlocks(blocks, tokenizer, mlm_prob=args.mlm_probability, seed=seed, global_cls=global_cls)


def _record(model, model_dir, trainer, args, data, evaluations, run: dict):
    """The manifest's ``pretrain`` record; ``run`` holds the numbers of this run."""
    before, after = evaluations
    return PretrainRecord(
        model=model_dir.resolve().name,
        architecture=type(model).__name__,
        corpora=[CorpusStats(**stats) for stats in data.stats],
        eval_corpora=data.eval_names,
        steps=trainer.state.global_step,
        wwm=data.mode,
        global_attention=args.global_attention,
        options=args.recorded(),
        world_size=args.world_size,
        loss_curve=_loss_curve(trainer.state.log_history),
        loss_plot=LOSS_PLOT,
        eval=BeforeAfter(corpus=", ".join(data.eval_names), before=before, after=after) if data.eval_names else None,
        **run,
    )


def _trainer(model, args, train_set, eval_set, steps, callbacks, seq_len: int):
    """The Trainer, and the callback that reports its steps (its ``advance`` is set while training)."""
    from transformers import PrinterCallback

    from longzoo.training.callbacks import EpochCallback, StepsCallback
    from longzoo.training.trainer import LongzooTrainer

    tokens = args.sequences_per_step * seq_len
    progress = StepsCallback(steps, tokens_per_step=tokens)
    trainer = LongzooTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        callbacks=[EpochCallback(train_set), progress, *(callbacks or [])],
        masked_lm=True,
        on_non_finite="No model was written; complete checkpoints are kept for --resume (lower --lr, say).",
    )
    trainer.remove_callback(PrinterCallback)  # StepsCallback prints the log lines instead
    return trainer, progress


def _train(trainer, checkpoint: Path | None, max_steps: int) -> float | None:
    """Train (or resume) and return the mean training loss.

    A run killed after its last checkpoint, while saving the final model, resumes at
    ``max_steps``: the Trainer would then run one step too many, so the checkpoint's
    weights and state are taken as they are.
    """
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json")) if checkpoint else None
    if state is None or state.global_step < max_steps:
        return trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).training_loss
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = state
    return _mean_logged_loss(state.log_history)


def _mean_logged_loss(history: list[dict]) -> float | None:
    """The mean per-step loss from the logged means, each weighted by the steps it covers."""
    logged = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    total, previous = 0.0, 0
    for step, loss in logged:
        total += loss * (step - previous)
        previous = step
    return total / previous if previous else None


def _eval_before(model, tokenizer, data, seq_len, args, out, resume, steps) -> dict | None:
    """The evaluation of the model before training, measured once (a resumed run reads it back)."""
    if data.eval is None:
        return None
    before_file = out / CACHE / "eval_before.json"
    if resume and before_file.is_file():
        return json.loads(before_file.read_text(encoding="utf-8"))
    with steps.step("Evaluating before training"):
        eval_before = _evaluate(model, tokenizer, data, seq_len, args)
    before_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(before_file, json.dumps(eval_before))
    return eval_before


def _check_output(out: Path, model_dir: Path, resume: bool, force: bool) -> None:
    """What ``out`` must be for this run: never the input or around it; resumable; replaceable."""
    if out.exists() and not out.is_dir():
        raise LongzooError(f"{out}: exists and is not a folder")
    if resume:
        refuse_inputs(out, [model_dir])
        if not (out / CHECKPOINTS).is_dir():
            raise LongzooError(f"{out}: nothing to resume (no {CHECKPOINTS}/ folder)")
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise LongzooError(f"{out}: folder exists and is not empty; pass --resume to continue or --force to restart")
    else:
        check_output(out, force, [model_dir])


def _prepare_output(out: Path, model_dir: Path, resume: bool, force: bool) -> None:
    """Make ``out`` ready for this run; called under the output lock, by the writing process only.

    A previous run's checkpoints stay until the corpora are prepared (see :func:`_clear_previous_run`).
    """
    _check_output(out, model_dir, resume, force)
    clean_leftovers(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_MARKER).touch()
    except OSError as exc:
        raise LongzooError(f"{out}: cannot write here ({exc.strerror or exc})") from None


def _clear_previous_run(out: Path) -> None:
    """``--force``: remove the previous run's checkpoints (the Trainer would mix them with this
    run's), once this run's corpora are ready, so that a bad corpus costs the user nothing.
    Its final model stays until this run replaces it; the prepared corpora are reused."""
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(out / ".final.partial", ignore_errors=True)


def _load_mlm(model_dir: Path, seed: int):
    """The long model with an MLM head; encoder-only models get a new head tied to the embeddings.

    transformers leaves the new head's output bias as uninitialised memory, so a new head
    is initialised here on purpose, and the whole model must be finite before training.
    A full-attention model trains with transformers' SDPA attention.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM

    full = AutoConfig.from_pretrained(model_dir).model_type != "longformer"
    with quiet_transformers():  # the new head of an encoder-only model is reported below
        model, info = AutoModelForMaskedLM.from_pretrained(
            model_dir,
            output_loading_info=True,
            tie_word_embeddings=True,
            **({"attn_implementation": FULL_ATTENTION_IMPLEMENTATION} if full else {}),
        )
    missing = set(info["missing_keys"])
    backbone_missing = [k for k in missing if not k.startswith(MLM_HEADS)]
    if backbone_missing:
        raise LongzooError(f"{model_dir}: weights missing for {backbone_missing[:3]}; not a complete model")
    new_head = complete_mlm_head(model, missing, seed)
    require_finite(model, f"{model_dir}")
    return model, new_head


def prepare_model(model, args: PretrainArguments) -> list[str]:
    """The model as pretraining runs it (no parameter changes: checkpoints stay stock).

    longzoo's attention unless ``--attention reference``, the run's attention dropout, and
    global projections frozen where nothing trains them; returns the frozen names.
    """
    if args.attention == "fast" and model.config.model_type == "longformer":
        from longzoo.models.attention import use_fast_attention

        use_fast_attention(model)
    _set_attention_dropout(model, args.attention_dropout)
    return _freeze_unused_global_projections(model, args.global_attention)


def _set_attention_dropout(model, probability: float | None) -> None:
    """Attention-probability dropout for this run only; the saved config keeps the base's value."""
    if probability is None:
        return
    for layer in model.base_model.encoder.layer:
        attention = layer.attention.self
        if isinstance(attention.dropout, float):  # Longformer keeps the probability
            attention.dropout = probability
        else:  # the BERT family keeps an nn.Dropout and hands its p to SDPA
            attention.dropout.p = probability


def _freeze_unused_global_projections(model, global_attention: str) -> list[str]:
    # Without global attention the *_global projections get no gradient; frozen, they
    # cannot trip DDP's unused-parameter check (with or without gradient checkpointing).
    if global_attention != "none":
        return []
    frozen = []
    for name, param in model.named_parameters():
        if "_global." in name:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def _copy_global_projections(model) -> None:
    """The reference recipe: after MLM without global attention, global = local again."""
    import torch

    with torch.no_grad():
        for layer in model.longformer.encoder.layer:
            attn = layer.attention.self
            for name in ("query", "key", "value"):
                getattr(attn, f"{name}_global").weight.copy_(getattr(attn, name).weight)
                getattr(attn, f"{name}_global").bias.copy_(getattr(attn, name).bias)


UNKNOWN_SHARE = 0.05  # above this, the vocabulary does not cover the text
MAX_EPOCHS = 3  # beyond this, the run mostly memorises the corpus


def _warn_about_the_plan(data, tokenizer, args: PretrainArguments, steps: Steps) -> None:
    """Say so when the corpus is largely unknown to the tokenizer, or too small for the run."""
    from rich.markup import escape

    blocks = data.train
    if tokenizer.unk_token_id is not None and data.real_tokens:
        unknown = data.unknown_tokens / data.real_tokens
        if unknown > UNKNOWN_SHARE:
            steps.note(
                f"[yellow]warning:[/] {unknown:.0%} of the corpus tokens are {escape(tokenizer.unk_token)}: the "
                "vocabulary does not cover this text (another language or script, or a wrong encoding?)"
            )
    needed = args.max_steps * args.sequences_per_step
    epochs = needed / max(1, len(blocks))
    if epochs > MAX_EPOCHS:
        steps.note(
            f"[yellow]warning:[/] {args.max_steps:,} steps read the corpus {epochs:.0f} times over "
            f"({len(blocks):,} blocks of {blocks.seq_len:,} tokens): give more text "
            "(a built-in corpus is small) or fewer --max-steps"
        )


def _evaluate(model, tokenizer, data, seq_len, args) -> dict:
    from longzoo.evaluation.mlm import evaluate

    was_training = model.training
    model.eval()
    try:
        return evaluate(
            None,
            [],
            documents=data.eval_documents(),
            seq_len=seq_len,
            wwm=args.wwm,
            mlm_prob=args.mlm_probability,
            model=model,
            tokenizer=tokenizer,
        )
    finally:
        model.train(was_training)


def _hyperparameters(args: PretrainArguments, seq_len: int) -> Hyperparameters:
    return Hyperparameters(
        learning_rate=args.learning_rate,
        schedule=str(args.lr_scheduler_type.value),
        warmup_steps=args.warmup_steps,
        batch_size=args.per_device_train_batch_size,
        grad_accum=args.gradient_accumulation_steps,
        world_size=args.world_size,
        tokens_per_step=args.sequences_per_step * seq_len,
        weight_decay=args.weight_decay,
        adam_epsilon=args.adam_epsilon,
        max_grad_norm=args.max_grad_norm,
        precision=args.precision,
        mlm_probability=args.mlm_probability,
        seed=args.seed,
    )


def _loss_curve(history: list[dict]) -> LossCurve:
    return LossCurve(
        train=[(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h],
        eval=[(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
    )


def _publish(model, model_dir: Path, out: Path, record: PretrainRecord) -> Manifest:
    """Write the final model into ``out``; the manifest moves in last, marking it complete."""
    staging = out / ".final.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        return _move_final(model, model_dir, out, record, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_final(model, model_dir: Path, out: Path, record: PretrainRecord, staging: Path) -> Manifest:
    """Save into ``staging``, then move each file into ``out``."""
    from longzoo.cards.render import render_card
    from longzoo.training.plot import plot_loss

    model.save_pretrained(staging)
    copy_tokenizer(model_dir, staging)
    modules = sentence_modules(model_dir)
    if modules:  # still a sentence-transformers model, with the converted length
        copy_sentence_modules(model_dir, staging, modules, usable_positions(model.config))
    plot_loss(record.loss_curve, staging / LOSS_PLOT)
    # evaluations of the folder described the model before training: add_step drops them
    manifest = add_step(read_manifest(model_dir), "pretrain", record)
    write_manifest(staging, manifest)
    if manifest.convert is not None:
        render_card(staging, strict=False, folder_name=out.name)
    manifest = read_manifest(staging)
    normal_permissions(staging)
    # A previous run's manifest goes first: until the new one lands, the folder is incomplete.
    (out / MANIFEST).unlink(missing_ok=True)
    for folder in sorted(p for p in staging.iterdir() if p.is_dir()):  # sentence-transformers modules
        shutil.rmtree(out / folder.name, ignore_errors=True)  # the previous final model's
        os.replace(folder, out / folder.name)
    files = sorted(p for p in staging.iterdir() if p.is_file())
    for file in sorted(files, key=lambda p: p.name == MANIFEST):
        os.replace(file, out / file.name)
    staging.rmdir()
    (out / RUN_MARKER).unlink(missing_ok=True)
    return manifest
