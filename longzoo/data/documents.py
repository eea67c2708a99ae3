"""Labelled documents for classification: JSON Lines or CSV files, one document per row.

A row holds a text field and a label field.  A label is a string or an integer (one class
per document) or, for multi-label tasks, a JSON list (JSON Lines) or a ``|``-separated
cell (CSV, with ``multi_label=True``).  Labels are kept as strings so ``1`` and ``"1"``
name the same class in both formats.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from longzoo.data.corpus import read_text_file
from longzoo.errors import LongzooError

CSV_LABEL_SEPARATOR = "|"


@dataclass(frozen=True)
class LabelledDocument:
    text: str
    labels: tuple[str, ...]  # one entry for single-label tasks
    multi: bool = False  # given as a list (or a multi-label CSV cell)


def read_documents(
    path: str | Path, *, text_field: str = "text", label_field: str = "label", multi_label: bool = False
) -> list[LabelledDocument]:
    """The documents of a ``.jsonl`` / ``.json`` (one object per line) or ``.csv`` file.

    Multi-label rows are recognised by a JSON list even without ``multi_label``; a
    document whose label list is empty is allowed in multi-label tasks (no class applies).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LongzooError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        rows = _jsonl_rows(path)
    else:
        raise LongzooError(f"{path}: expected a .jsonl or .csv file")
    documents = []
    for line, row in rows:
        where = f"{path}:{line}"
        if text_field not in row:
            raise LongzooError(f"{where}: no {text_field!r} field (choose it with --text-field)")
        if label_field not in row:
            raise LongzooError(f"{where}: no {label_field!r} field (choose it with --label-field)")
        text = row[text_field]
        if not isinstance(text, str) or not text.strip():
            raise LongzooError(f"{where}: the {text_field!r} field is empty or not text")
        value = row[label_field]
        labels = _labels(value, where, multi_label, suffix == ".csv")
        documents.append(LabelledDocument(text, labels, multi=multi_label or isinstance(value, list)))
    if not documents:
        raise LongzooError(f"{path}: no documents")
    return documents


def _jsonl_rows(path: Path):
    for number, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise LongzooError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise LongzooError(f"{path}:{number}: not a JSON object")
        yield number, row


def _csv_rows(path: Path):
    with io.StringIO(read_text_file(path), newline="") as fh:
        try:
            for number, row in enumerate(csv.DictReader(fh), 2):  # line 1 is the header
                yield number, row
        except csv.Error as exc:
            raise LongzooError(f"{path}: not a valid CSV file ({exc})") from None


def _labels(value, where: str, multi_label: bool, from_csv: bool) -> tuple[str, ...]:
    if isinstance(value, list):
        labels = value
    elif from_csv and multi_label:
        labels = [part for part in value.split(CSV_LABEL_SEPARATOR) if part.strip()]
    elif isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LongzooError(f"{where}: a label must be text, an integer or a list of them")
    else:
        labels = [value]
    if any(isinstance(label, bool) or not isinstance(label, (str, int)) for label in labels):
        raise LongzooError(f"{where}: a label must be text, an integer or a list of them")
    labels = tuple(str(label).strip() for label in labels)
    if any(not label for label in labels) or (not labels and not (multi_label or isinstance(value, list))):
        raise LongzooError(f"{where}: empty label")
    return labels


def label_names(train: list[LabelledDocument], evaluation: list[LabelledDocument]) -> list[str]:
    """The classes, sorted; every class of the evaluation file must occur in training."""
    names = sorted({label for doc in train for label in doc.labels}, key=_natural)
    unseen = sorted({label for doc in evaluation for label in doc.labels} - set(names), key=_natural)
    if unseen:
        raise LongzooError(f"the evaluation file has labels the training file never uses: {', '.join(unseen[:5])}")
    if not names:
        raise LongzooError("the training file names no labels; a classifier needs at least one class")
    if len(names) < 2 and not is_multi_label(train):
        raise LongzooError("the training file has only one class; classification needs at least two")
    return names


def _natural(label: str):
    # "2" before "10"; integers before words
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def is_multi_label(*collections: list[LabelledDocument]) -> bool:
    """Multi-label when any document gave its labels as a list (or had other than one)."""
    return any(doc.multi or len(doc.labels) != 1 for docs in collections for doc in docs)


def write_jsonl(path: str | Path, documents, *, text_field: str = "text", label_field: str = "label") -> None:
    """Write ``(text, label)`` pairs (label: a value or a list) as JSON Lines."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for text, label in documents:
            fh.write(json.dumps({text_field: text, label_field: label}, ensure_ascii=False) + "\n")
