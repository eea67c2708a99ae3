"""Long-document classification: fine-tune a converted long model, and the short-model baselines.

``finetune`` trains the long model (a Longformer with global attention on the first token,
or a full-attention model) on a labelled
file and scores it on another; with ``baselines`` it trains, on the same data and budget,

* ``truncate`` — the short base model on the first tokens it can hold, and
* ``stride`` — the short base model over overlapping chunks of the same text the long
  model reads, pooled by a small transformer (:mod:`longzoo.models.stride`),

so that one table answers "does the long model use its context?".  Training goes through
transformers' ``Trainer``; the output folder receives the fine-tuned long model (a stock
``LongformerForSequenceClassification``, or ``BertForSequenceClassification`` and its
kin for the full form), its tokenizer, the extended ``longzoo.json`` and
the card.  Baseline weights are not kept: their role is the comparison.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from longzoo.cards.render import check_records
from longzoo.converters.adapters import usable_positions
from longzoo.data.documents import LabelledDocument, is_multi_label, label_names, read_documents
from longzoo.errors import LongzooError
from longzoo.evaluation.classification import metrics_for_trainer
from longzoo.manifest import add_step, read_manifest, write_manifest
from longzoo.models.folders import attention_form, copy_tokenizer, load_tokenizer, long_config, model_config
from longzoo.outputs import check_output, staged_output
from longzoo.progress import Steps
from longzoo.quiet import quiet_transformers
from longzoo.records import FileRecord, FinetuneRecord, Manifest
from longzoo.training.arguments import FinetuneArguments, override
from longzoo.weights import require_finite


@dataclass
class FinetuneResult:
    out: Path
    results: dict  # system -> metrics
    manifest: Manifest | None = None


def finetune(
    model_dir: str | Path,
    train_file: str | Path,
    eval_file: str | Path,
    out: str | Path,
    *,
    args: FinetuneArguments | None = None,
    base: str | None = None,
    force: bool = False,
    steps: Steps | None = None,
) -> FinetuneResult:
    """Fine-tune the long model (either form) in ``model_dir`` for document classification.

    ``base`` names the short model of the baselines (default: the base recorded in the
    folder's ``longzoo.json``).  Writes ``out`` all at once when everything succeeded.
    """
    args = args or FinetuneArguments()  # checked when it was made
    steps = steps or Steps()
    model_dir = Path(model_dir).expanduser()
    config = long_config(model_dir)
    tokenizer = load_tokenizer(model_dir, config)
    check_records(model_dir)  # a broken manifest fails now, not after training
    positions = usable_positions(config)
    max_len = args.max_len or positions
    if max_len > positions:
        raise LongzooError(f"--max-len {max_len} is above the model's {positions} positions")
    task = _read_task(train_file, eval_file, args)
    short = _short_model(model_dir, base, args, max_len) if args.baselines else None
    inputs = [model_dir, train_file, eval_file, *([short.folder] if short else [])]
    check_output(Path(out).expanduser().absolute(), force, inputs)  # fail before hours of training

    results = {}
    with tempfile.TemporaryDirectory(prefix="longzoo-finetune-") as scratch:
        with steps.step(f"Fine-tuning the long model ({max_len} tokens)"):
            model, results["long"] = _train_long(model_dir, tokenizer, task, max_len, args, scratch, steps)
        for baseline in args.baselines:
            with steps.step(f"Baseline: {baseline}"):
                train = _train_truncate if baseline == "truncate" else _train_stride
                results[baseline] = train(short, task, max_len, args, scratch, steps)
    record = FinetuneRecord(
        task=args.task,
        multi_label=task.multi,
        labels=task.names,
        train=_file_record(train_file, task.train_docs),
        eval=_file_record(eval_file, task.eval_docs),
        max_len=max_len,
        baseline_model=_display_name(short.name) if short else None,
        options=args.recorded(),
        results=results,
        architecture=type(model).__name__,
    )
    with steps.step("Saving the fine-tuned model"):
        manifest = _publish(model, model_dir, Path(out), record, force, inputs)
    return FinetuneResult(Path(out).expanduser().absolute(), results, manifest)


def _read_task(train_file, eval_file, args: FinetuneArguments) -> _Task:
    """Both files read and checked, with the label set and the targets every system trains on."""
    read = dict(text_field=args.text_field, label_field=args.label_field, multi_label=args.multi_label)
    train_docs, eval_docs = read_documents(train_file, **read), read_documents(eval_file, **read)
    names = label_names(train_docs, eval_docs)
    multi = args.multi_label or is_multi_label(train_docs, eval_docs)
    targets = _targets(train_docs, names, multi), _targets(eval_docs, names, multi)
    return _Task(train_docs, eval_docs, names, multi, *targets)


def _baseline_folder(model_dir: Path, base: str | None) -> tuple[str, Path]:
    """The short model's name and folder: ``base`` if given, else the base the conversion recorded."""
    from longzoo.converters.source import resolve_base

    if base is None:
        conversion = read_manifest(model_dir).convert
        recorded = conversion.base if conversion else None
        if recorded is None:
            raise LongzooError(f"{model_dir}: no conversion record names the short base; pass --base")
        if recorded.source == "local":
            # records keep a local base's folder name only, never its path on this machine
            raise LongzooError(f"the short base was the local folder {recorded.id}; pass --base FOLDER")
        return recorded.id, resolve_base(recorded.id, revision=recorded.revision).path
    return str(base), resolve_base(base).path


@dataclass(frozen=True)
class _ShortModel:
    """The baselines' short model and, for ``stride``, how documents are cut into chunks."""

    name: str  # as given (--base) or recorded at conversion: what the manifest names
    folder: Path
    tokenizer: object
    length: int  # tokens per input, specials included
    chunk_len: int
    chunk_overlap: int
    max_chunks: int


def _short_model(model_dir: Path, base: str | None, args: FinetuneArguments, max_len: int) -> _ShortModel:
    """Resolve and check everything the baselines need, before any training starts."""
    from longzoo.models.stride import chunk_spans

    name, folder = _baseline_folder(model_dir, base)
    config = model_config(folder)
    if attention_form(config, folder) is not None:
        raise LongzooError(f"{base or folder}: the baselines need the short base model, not a long one")
    tokenizer = load_tokenizer(folder, config)
    length = min(usable_positions(config), tokenizer.model_max_length)
    chunk_len = args.chunk_len or length
    if not tokenizer.num_special_tokens_to_add() < chunk_len <= length:
        raise LongzooError(f"--chunk-len must be between 3 and the short model's {length} tokens")
    room = chunk_len - tokenizer.num_special_tokens_to_add()
    overlap = args.chunk_overlap if args.chunk_overlap is not None else room // 4
    if not 0 <= overlap < room:
        raise LongzooError(f"--chunk-overlap must be between 0 and {room - 1}")
    content = max_len - tokenizer.num_special_tokens_to_add()  # the text the long model reads
    max_chunks = args.max_chunks or len(chunk_spans(content, room, overlap))
    return _ShortModel(name, folder, tokenizer, length, chunk_len, overlap, max_chunks)


def _targets(docs: list[LabelledDocument], names: list[str], multi: bool):
    import torch

    index = {name: i for i, name in enumerate(names)}
    if not multi:
        return torch.tensor([index[doc.labels[0]] for doc in docs])
    targets = torch.zeros(len(docs), len(names))
    for row, doc in enumerate(docs):
        targets[row, [index[label] for label in doc.labels]] = 1.0
    return targets


@dataclass(frozen=True)
class _Task:
    """The documents, classes and target tensors every system trains and scores on."""

    train_docs: list[LabelledDocument]
    eval_docs: list[LabelledDocument]
    names: list[str]
    multi: bool
    train_targets: object  # class indices, or (documents, classes) 0/1 for multi-label
    eval_targets: object

    @property
    def problem_type(self) -> str:
        return "multi_label_classification" if self.multi else "single_label_classification"


def _pad_batch(tokenizer):
    """transformers' own padding collator; labels (class ids or 0/1 rows) are stacked as they are."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, return_tensors="pt")


def _sequence_examples(tokenizer, docs, targets, length: int) -> list[dict]:
    """Feature dicts (a list is a map-style dataset for the Trainer) of whole-sequence inputs."""
    with quiet_transformers():  # "sequence longer than the model" is the point here
        ids = tokenizer([doc.text for doc in docs], max_length=length, truncation=True)["input_ids"]
    # plain numbers and lists, which the padding collator batches (it cannot read tensor rows)
    return [{"input_ids": doc, "labels": target.tolist()} for doc, target in zip(ids, targets, strict=True)]


def _train_and_score(model, train_set, eval_set, collate, multi, lr, args, scratch, steps) -> dict:
    """Train with transformers' Trainer, then score the evaluation documents."""
    from transformers import PrinterCallback

    from longzoo.training.callbacks import StepsCallback
    from longzoo.training.trainer import LongzooTrainer

    args = override(args, output_dir=str(Path(scratch) / "trainer"), learning_rate=lr)
    trainer = LongzooTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=collate,
        callbacks=[StepsCallback(steps)],
        compute_metrics=metrics_for_trainer(multi),
        on_non_finite="Nothing was written: lower --lr (say) and run again.",
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    model.eval()
    scored = trainer.predict(eval_set, metric_key_prefix="eval").metrics
    metrics = {key: scored[f"eval_{key}"] for key in ("accuracy", "macro_f1", "micro_f1", "documents")}
    return {**metrics, "train_loss": round(output.training_loss, 4), "train_seconds": round(seconds, 1)}


def _train_long(model_dir, tokenizer, task: _Task, max_len, args, scratch, steps):
    from transformers import set_seed

    from longzoo.models.loading import load

    set_seed(args.seed)
    with quiet_transformers():  # the new classification head is expected
        model = load(
            model_dir,
            "sequence-classification",
            num_labels=len(task.names),
            problem_type=task.problem_type,
            id2label=dict(enumerate(task.names)),
            label2id={name: i for i, name in enumerate(task.names)},
            fast_attention=args.attention == "fast",
        )
    train_set = _sequence_examples(tokenizer, task.train_docs, task.train_targets, max_len)
    eval_set = _sequence_examples(tokenizer, task.eval_docs, task.eval_targets, max_len)
    metrics = _train_and_score(
        model, train_set, eval_set, _pad_batch(tokenizer), task.multi, args.learning_rate, args, scratch, steps
    )
    return model, {**metrics, "tokens": max_len, **_coverage(eval_set, max_len)}


def _coverage(eval_set, length: int) -> dict:
    return {"eval_documents_cut": sum(len(f["input_ids"]) >= length for f in eval_set)}


def _train_truncate(short: _ShortModel, task: _Task, max_len, args, scratch, steps):
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(args.seed)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            short.folder, num_labels=len(task.names), problem_type=task.problem_type
        )
    train_set = _sequence_examples(short.tokenizer, task.train_docs, task.train_targets, short.length)
    eval_set = _sequence_examples(short.tokenizer, task.eval_docs, task.eval_targets, short.length)
    lr = args.baseline_learning_rate or args.learning_rate
    collate = _pad_batch(short.tokenizer)
    metrics = _train_and_score(model, train_set, eval_set, collate, task.multi, lr, args, scratch, steps)
    return {**metrics, "tokens": short.length, **_coverage(eval_set, short.length)}


def _train_stride(short: _ShortModel, task: _Task, max_len, args, scratch, steps):
    import torch
    from transformers import AutoModel, set_seed

    from longzoo.models.stride import ChunkStrideClassifier, chunk_documents

    tokenizer = short.tokenizer
    content = max_len - tokenizer.num_special_tokens_to_add()  # the text the long model reads

    def examples(docs, targets):
        texts = [doc.text for doc in docs]
        chunks = chunk_documents(texts, tokenizer, short.chunk_len, short.chunk_overlap, short.max_chunks, content)
        return [{"chunks": doc, "labels": target} for doc, target in zip(chunks, targets, strict=True)]

    def collate(features):
        chunks = max(len(f["chunks"]) for f in features)
        width = max(len(c) for f in features for c in f["chunks"])
        ids = torch.full((len(features), chunks, width), tokenizer.pad_token_id)
        mask = torch.zeros(len(features), chunks, width, dtype=torch.long)
        chunk_mask = torch.zeros(len(features), chunks, dtype=torch.long)
        for row, f in enumerate(features):
            for col, chunk in enumerate(f["chunks"]):
                ids[row, col, : len(chunk)] = torch.tensor(chunk)
                mask[row, col, : len(chunk)] = 1
                chunk_mask[row, col] = 1
        labels = torch.stack([f["labels"] for f in features])
        return {"input_ids": ids, "attention_mask": mask, "chunk_mask": chunk_mask, "labels": labels}

    set_seed(args.seed)
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(short.folder, add_pooling_layer=False)
    model = ChunkStrideClassifier(encoder, len(task.names), max_chunks=short.max_chunks, multi_label=task.multi)
    train_set = examples(task.train_docs, task.train_targets)
    eval_set = examples(task.eval_docs, task.eval_targets)
    lr = args.baseline_learning_rate or args.learning_rate
    metrics = _train_and_score(model, train_set, eval_set, collate, task.multi, lr, args, scratch, steps)
    room = short.chunk_len - tokenizer.num_special_tokens_to_add()
    covered = (short.max_chunks - 1) * (room - short.chunk_overlap) + room
    return {
        **metrics,
        "tokens": min(max_len - tokenizer.num_special_tokens_to_add(), covered),
        "chunk_len": short.chunk_len,
        "chunk_overlap": short.chunk_overlap,
        "max_chunks": short.max_chunks,
    }


def _display_name(name: str) -> str:
    """A Hub id as it is; a local folder by its name only (records never hold local paths)."""
    path = Path(name).expanduser()
    return path.resolve().name if path.exists() else name


def _file_record(path, docs) -> FileRecord:
    path = Path(path).expanduser()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return FileRecord(name=path.name, sha256=digest, documents=len(docs))


def _publish(model, model_dir: Path, out: Path, record: FinetuneRecord, force: bool, inputs: list) -> Manifest:
    """Model, tokenizer, manifest and card, written to ``out`` in one rename."""
    from longzoo.cards.render import render_card

    require_finite(model, "the fine-tuned model")
    with staged_output(out, force=force, inputs=inputs) as staging:
        model.save_pretrained(staging)
        copy_tokenizer(model_dir, staging)
        # evaluations of the folder described the model before fine-tuning: add_step drops them
        manifest = add_step(read_manifest(model_dir), "finetune", record)
        write_manifest(staging, manifest)
        if manifest.convert is not None:
            render_card(staging, strict=False, folder_name=Path(out).name)
        return read_manifest(staging)
