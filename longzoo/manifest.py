"""``longzoo.json``: the one record of how a model folder was made.

Read and written as the typed :class:`~longzoo.records.Manifest`; each step adds its
own record and a line to ``history``, and the model card is rendered from this file and
nothing else.  Folders written before the typed records (format 1) are migrated when read.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath

from longzoo.errors import LongzooError
from longzoo.outputs import MANIFEST, write_text_atomic
from longzoo.records import FORMAT, Evaluation, HistoryEntry, Manifest, Record

# Steps that replace the weights: evaluations of the old weights no longer describe the folder.
_CHANGES_WEIGHTS = ("pretrain", "finetune")


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of ``folder``; an empty one if the folder has none yet."""
    from pydantic import ValidationError

    path = Path(folder) / MANIFEST
    if not path.is_file():
        return Manifest()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise LongzooError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(raw, dict):
        raise LongzooError(f"{path}: not a longzoo manifest")
    raw = without_local_paths(raw)  # an older longzoo stored local bases by their path
    bad = _non_finite_field(raw)
    if bad is not None:
        raise LongzooError(f"{path}: {bad} is not a finite number; restore the file or run the step again")
    try:
        return Manifest.model_validate(migrate(raw, path))
    except ValidationError as exc:
        raise LongzooError(
            f"{path}: a record is missing or malformed ({_first_problem(exc)}); restore the file or run the step again"
        ) from None


def _first_problem(exc) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the file"
    return f"{where}: {error['msg'].lower()}"


def record_step(folder: str | Path, step: str, record: Record | None) -> Manifest:
    """Store ``record`` as the ``step`` record of ``folder``'s manifest and log it in ``history``."""
    manifest = add_step(read_manifest(folder), step, record)
    write_manifest(folder, manifest)
    return manifest


def add_step(manifest: Manifest, step: str, record: Record | None) -> Manifest:
    """``manifest`` with ``record`` as its ``step`` record and a ``history`` line for it."""
    setattr(manifest, step, record)
    if step in _CHANGES_WEIGHTS:
        manifest.evaluations = []
    manifest.history.append(history_entry(step))
    return manifest


def add_evaluation(manifest: Manifest, evaluation: Evaluation) -> Manifest:
    """Add a `longzoo eval` result; a newer score of the same corpus and window replaces the older."""
    key = (evaluation.corpus, evaluation.window)
    manifest.evaluations = [e for e in manifest.evaluations if (e.corpus, e.window) != key] + [evaluation]
    manifest.history.append(history_entry("eval"))
    return manifest


def history_entry(step: str) -> HistoryEntry:
    """One ``history`` line: the step and when it finished (UTC)."""
    return HistoryEntry(step=step, at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_manifest(folder: str | Path, manifest: Manifest) -> None:
    """Write atomically: a reader never sees half a manifest, nor a NaN passed off as a number."""
    manifest.format = FORMAT
    data = manifest.model_dump(mode="json", exclude_none=False)
    bad = _non_finite_field(manifest.model_dump())
    if bad is not None:
        raise LongzooError(f"{Path(folder) / MANIFEST}: {bad} is not a finite number; nothing was recorded")
    text = json.dumps(without_local_paths(data), indent=2, ensure_ascii=False)
    write_text_atomic(Path(folder) / MANIFEST, text + "\n")


_ABSOLUTE = re.compile(r"^(/|~/|[A-Za-z]:[\\/])")


def without_local_paths(value):
    """``value`` with every absolute local path replaced by its last component.

    A manifest travels with the model to the Hub: a user's home folder or virtualenv
    has no place in it, and means nothing on another machine anyway.
    """
    if isinstance(value, str):
        return PureWindowsPath(value).name if _ABSOLUTE.match(value) else value
    if isinstance(value, dict):
        return {key: without_local_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_local_paths(item) for item in value]
    return value


def _non_finite_field(value, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in ``value`` (nested dicts, lists and tuples)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "a value"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_field(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


# ----------------------------------------------------------------------------- format 1
def migrate(raw: dict, path: Path) -> dict:
    """A manifest of any earlier format, as the current format's fields.

    Format 1 (longzoo before the typed records) differs in four places: one ``eval``
    section instead of a list of ``evaluations``; a stored ``parity.passed`` instead of
    a derived one; the masking unit and hyperparameters as display strings.
    """
    version = raw.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LongzooError(f"{path}: format {version!r} is not a longzoo manifest format")
    if version > FORMAT:
        raise LongzooError(f"{path}: written by a newer longzoo (format {version}); upgrade longzoo to read it")
    if version == FORMAT:
        return raw
    raw = dict(raw, format=FORMAT)
    previous = raw.pop("eval", None)
    raw.setdefault("evaluations", [previous] if isinstance(previous, dict) else [])
    if isinstance(raw.get("convert"), dict):
        raw["convert"] = _migrate_convert(dict(raw["convert"]))
    for step in ("pretrain", "finetune"):
        if isinstance(raw.get(step), dict) and isinstance(raw[step].get("options"), dict):
            options = raw[step]["options"]
            raw[step] = dict(raw[step], options={_V1_OPTION_NAMES.get(k, k): v for k, v in options.items()})
    if isinstance(raw.get("pretrain"), dict):
        raw["pretrain"] = _migrate_pretrain(dict(raw["pretrain"]))
    return raw


# Format 1 named the training settings its own way; they are TrainingArguments' fields now.
_V1_OPTION_NAMES = {
    "lr": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "warmup": "warmup_steps",
    "warmup_ratio": "warmup_steps",  # a value below 1 is a ratio to transformers
    "mlm_prob": "mlm_probability",
    "epochs": "num_train_epochs",
    "gradient_checkpointing": "activation_checkpointing",
    "baseline_lr": "baseline_learning_rate",
}


def _migrate_convert(record: dict) -> dict:
    parity = record.get("parity")  # its stored "passed" is dropped on reading: derived now
    if isinstance(parity, dict):
        run = parity.get("full_length")
        if isinstance(run, dict) and "requested" not in run:
            record["parity"] = {**parity, "full_length": {**run, "requested": record.get("max_positions")}}
    return record


_WWM_WORDING = {"whole words (jieba)": "jieba", "whole words (tokenizer words)": "tokenizer", "tokens": "none"}


def _migrate_pretrain(record: dict) -> dict:
    record.pop("global_projections", None)  # derived from global_attention now
    wwm = record.get("wwm")
    if isinstance(wwm, str) and wwm not in _WWM_WORDING.values():
        record["wwm"] = _WWM_WORDING.get(wwm) or (
            "jieba" if "jieba" in wwm else "tokenizer" if "word" in wwm else "none"
        )
    shown = record.get("hyperparameters")
    if isinstance(shown, dict) and "learning_rate" not in shown:
        record["hyperparameters"] = _hyperparameters_from_v1(record, shown)
        if record["hyperparameters"] is None:  # not derivable: keep the wording rather than lose it
            record["hyperparameters_as_shown"] = shown
    return record


def _hyperparameters_from_v1(record: dict, shown: dict) -> dict | None:
    """Format 1 showed the run's options as sentences; the options themselves hold the numbers."""
    options = record.get("options") or {}
    warmup = re.search(r"(\d+) warmup", str(shown.get("schedule", "")))
    needed = (
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "weight_decay",
        "adam_epsilon",
        "max_grad_norm",
        "mlm_probability",
        "seed",
    )
    if warmup is None or any(options.get(name) is None for name in needed) or "seq_len" not in record:
        return None
    world = record.get("world_size", 1)
    batch, accumulation = options["per_device_train_batch_size"], options["gradient_accumulation_steps"]
    return {
        "learning_rate": options["learning_rate"],
        "warmup_steps": int(warmup.group(1)),
        "batch_size": batch,
        "grad_accum": accumulation,
        "world_size": world,
        "tokens_per_step": batch * accumulation * world * record["seq_len"],
        "weight_decay": options["weight_decay"],
        "adam_epsilon": options["adam_epsilon"],
        "max_grad_norm": options["max_grad_norm"],
        "precision": "bf16" if options.get("bf16") else "fp16" if options.get("fp16") else "fp32",
        "mlm_probability": options["mlm_probability"],
        "seed": options["seed"],
    }
