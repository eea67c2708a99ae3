"""Pretraining corpora as 🤗 datasets: cleaned, tokenized and packed into Arrow files on disk.

No process holds a corpus in memory.  Local text and JSON Lines files go through
``load_dataset`` (the ``text`` builder, one example per paragraph, or ``json``); built-in
corpora and streamed Hub datasets through ``Dataset.from_generator``.  Cleaning,
tokenization (with word ids) and packing are batched ``.map`` steps whose results are
memory-mapped Arrow files under ``cache_dir``, named by fingerprints that cover
everything they depend on, so a rerun finds them and starts in seconds.

Packing runs in one process over fixed groups of :data:`PACK_BATCH` documents, so the
blocks, and with them the masks drawn per (seed, epoch, block), do not depend on
``num_proc``; tokenization, the costly part, runs on ``num_proc`` processes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from longzoo.data.corpus import (
    BUILTIN,
    JSONL_SUFFIXES,
    check_not_binary,
    corpus_files,
    corpus_name,
    corpus_texts,
    diagnose_files,
    split_paragraphs,
)
from longzoo.data.packing import CACHE_FORMAT, pack, tokenize_texts
from longzoo.errors import LongzooError
from longzoo.quiet import quiet_datasets

PACK_BATCH = 1000  # documents packed together; a block never holds documents of two groups
TEXT = "text"


@dataclass(frozen=True)
class Corpus:
    """One ``--corpus``: its cleaned documents (an Arrow ``text`` column) and their origin."""

    spec: str
    name: str
    texts: object  # datasets.Dataset
    hub_dataset: str | None = None
    cut_at: int | None = None  # characters: a streamed corpus stopped at this budget

    @property
    def documents(self) -> int:
        return len(self.texts)

    def characters(self) -> int:
        """Characters in all documents, read batch by batch (through any indices mapping)."""
        import pyarrow.compute as pc

        batches = self.texts.with_format("arrow").iter(batch_size=10_000)
        return sum(int(pc.sum(pc.utf8_length(batch[TEXT])).as_py() or 0) for batch in batches)

    def sample(self, n: int = 50) -> list[str]:
        return self.texts[: min(n, len(self.texts))][TEXT]


def load_texts(spec: str, cache_dir: Path, *, char_budget: int | None = None, num_proc: int = 1) -> Corpus:
    """The cleaned, non-empty documents of one corpus; raises when none is left.

    A streamed Hub dataset is read until its documents hold ``char_budget`` characters.
    """
    path = Path(spec).expanduser()
    with quiet_datasets():
        if path.exists():
            texts = _local(corpus_files(spec), cache_dir, num_proc)
            corpus = Corpus(spec, corpus_name(spec), texts)
        elif spec in BUILTIN:
            corpus = Corpus(spec, spec, _generated(spec, None, cache_dir))
        else:
            corpus = _hub(spec, cache_dir, char_budget)
    if not len(corpus.texts):
        raise LongzooError(f"{spec}: no text left after cleaning (empty corpus)")
    return corpus


def _local(files: list[Path], cache_dir: Path, num_proc: int):
    """Text files (a document per paragraph) and JSON Lines files (their ``text``), in name order."""
    from datasets import Dataset, concatenate_datasets, load_dataset

    for file in files:
        check_not_binary(file)
    files = [f for f in files if f.stat().st_size]  # datasets finds "no data" in an empty file
    if not files:
        return Dataset.from_dict({TEXT: []}, features=_text_features())
    # datasets keys local files by path and modification time only; a folder per (path, size,
    # mtime in ns) also catches a copy that kept the old time (cp -p, rsync -t, tar)
    cache_dir = (
        cache_dir / f"files-{_digest([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])}"
    )
    parts = []
    for jsonl, group in groupby(files, key=lambda f: f.suffix.lower() in JSONL_SUFFIXES):
        group = [str(f) for f in group]
        patterns = [glob.escape(f) for f in group]  # data_files are glob patterns: "a[1].txt" is a name
        try:
            if jsonl:
                part = load_dataset("json", data_files=patterns, split="train", cache_dir=str(cache_dir))
                _require_text_column(part, group)
                part = part.select_columns([TEXT])
            else:
                part = load_dataset(
                    "text",
                    data_files=patterns,
                    sample_by="paragraph",
                    chunksize=1 << 20,  # characters read at a time (datasets' 10M would hold ~100 MB)
                    features=_text_features(),  # an empty file is an empty dataset, not a schema error
                    split="train",
                    cache_dir=str(cache_dir),
                )
        except LongzooError:
            raise
        except Exception as exc:  # noqa: BLE001 - the builders raise many kinds; name the file and line
            diagnose_files([Path(f) for f in group])
            raise LongzooError(f"{group[0]}: cannot read ({str(exc).splitlines()[0]})") from None
        parts.append(part)
    texts = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return _arrow_map(texts, _clean_batch, num_proc=_processes(num_proc, len(texts)), desc="cleaning")


def _require_text_column(part, files: list[str]) -> None:
    from datasets import Value

    feature = part.features.get(TEXT)
    if feature != Value("string") or part.data.column(TEXT).null_count:
        diagnose_files([Path(f) for f in files])  # names the first line without a string text
        raise LongzooError(f"{files[0]}: JSON lines have no string 'text' field")


def _clean_batch(batch, release: bool):
    import pyarrow as pa

    # The text builder splits paragraphs on "\n\n"; a line of spaces separates documents too.
    texts = [doc for text in batch.column(TEXT).to_pylist() for doc in split_paragraphs(text)]
    _release(batch, release)
    return pa.table({TEXT: pa.array(texts, pa.string())})


def _arrow_map(dataset, function, *, fn_kwargs: dict | None = None, **kwargs):
    """``dataset.map(function)`` over Arrow batches (no Python objects per token); the result
    in the default format.  Inputs read from files are released after each batch."""
    kwargs.setdefault("batched", True)
    # only batches sliced straight from the files (no indices mapping: those are copies)
    fn_kwargs = {**(fn_kwargs or {}), "release": bool(dataset.cache_files) and dataset._indices is None}
    before = os.environ.get(_PARALLELISM)
    try:
        mapped = dataset.with_format("arrow").map(
            function, fn_kwargs=fn_kwargs, remove_columns=dataset.column_names, **kwargs
        )
    finally:
        _restore_parallelism(before)
    return mapped.with_format(None)


_PARALLELISM = "TOKENIZERS_PARALLELISM"


def _restore_parallelism(before: str | None) -> None:
    """Undo what ``.map(num_proc=N)`` leaves: it sets TOKENIZERS_PARALLELISM=false for its
    workers and restores ``os.environ`` by assignment, so the C environment the tokenizers
    read keeps "false", and this process's tokenizer (evaluation) would run on one thread."""
    if before is None:
        os.environ[_PARALLELISM] = ""  # through os.environ, so that the deletion reaches unsetenv
        del os.environ[_PARALLELISM]
    else:
        os.environ[_PARALLELISM] = before


# madvise(MADV_PAGEOUT), Linux 5.4+: reclaim these pages now.  The inputs of the .map steps
# are memory-mapped Arrow files; every page read stays in the process's RSS until the map
# ends, so one pass over a corpus would grow RSS by its size (the kernel could reclaim them,
# but schedulers and users watch RSS).  Paging out what a batch read keeps RSS flat; the data
# stays in the file (a later read faults it in again), so this is never destructive.
_MADV_PAGEOUT = 21


def _release(batch, release: bool) -> None:
    """Page out what earlier batches were read from (see ``_MADV_PAGEOUT``).

    A batch is a slice of a record batch of the file, and its buffers are the whole record
    batch's, shared with the next slices: a buffer is released once no batch uses it any
    more, so each page is read once.  The last record batch stays (one, of ~1,000 rows).
    """
    if not release or not _LIBC:
        return
    import mmap

    page = mmap.PAGESIZE
    current = {
        (buffer.address, buffer.size)
        for column in batch.columns
        for chunk in column.chunks
        for buffer in chunk.buffers()
        if buffer is not None and buffer.size >= page
    }
    for address, size in _HELD - current:
        start = address & ~(page - 1)
        _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(address + size - start), _MADV_PAGEOUT)
    _HELD.clear()
    _HELD.update(current)


_HELD: set[tuple[int, int]] = set()  # (address, size) of the buffers the last batch used


def _libc():
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _processes(num_proc: int, rows: int) -> int | None:
    """``num_proc`` for ``.map``: None (this process) unless several processes get work."""
    n = min(num_proc, max(1, rows // 64))
    return n if n > 1 else None


def _text_features():
    from datasets import Features, Value

    return Features({TEXT: Value("string")})


def _generated(spec: str, budget: int | None, cache_dir: Path):
    """A built-in or Hub corpus written to Arrow as it is read; a rerun finds the file."""
    from datasets import Dataset

    kwargs = {"spec": spec, "budget": budget, "packages": _installed_packages()}
    try:
        return Dataset.from_generator(
            _documents, gen_kwargs=kwargs, features=_text_features(), cache_dir=str(cache_dir)
        )
    except Exception as exc:  # noqa: BLE001 - datasets wraps what the generator raised
        cause = exc
        while cause is not None and not isinstance(cause, LongzooError):
            cause = cause.__cause__ or cause.__context__
        raise (cause or LongzooError(f"{spec}: {str(exc).splitlines()[0]}")) from None


def _documents(spec: str, budget: int | None, packages: str) -> Iterator[dict]:
    # ``packages`` only keys the cache: a built-in corpus changes with what is installed
    for text in corpus_texts(spec, char_budget=budget):
        yield {TEXT: text}


def _installed_packages() -> str:
    from importlib.metadata import distributions

    names = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def _hub(spec: str, cache_dir: Path, char_budget: int | None) -> Corpus:
    corpus = Corpus(spec, spec, _generated(spec, char_budget, cache_dir), hub_dataset=spec)
    if char_budget is not None and corpus.characters() >= char_budget:  # stopped at the budget
        return dataclasses.replace(corpus, cut_at=char_budget)
    return corpus


def held_out(corpus: Corpus, fraction: float, seed: int) -> tuple[Corpus, Corpus]:
    """``corpus`` split by document into training and a held-out ``fraction`` (no overlap).

    The held-out documents are drawn by ``seed``; both parts keep the corpus order.
    """
    n = len(corpus.texts)
    if n < 2:
        raise LongzooError(f"{corpus.spec}: --eval-split needs at least 2 documents; the corpus has {n}")
    k = min(n - 1, max(1, round(n * fraction)))
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    key = _digest([corpus.texts._fingerprint, fraction, seed])
    parts = []
    for side, indices in (("train", np.flatnonzero(~chosen)), ("eval", np.flatnonzero(chosen))):
        texts = corpus.texts.select(indices, new_fingerprint=_digest([key, side]))
        parts.append(Corpus(corpus.spec, corpus.name, texts, corpus.hub_dataset, corpus.cut_at))
    return parts[0], parts[1]


@dataclass(frozen=True)
class Packing:
    """How documents become blocks: everything a packed corpus depends on besides its text."""

    tokenizer: object
    tokenizer_dir: Path
    seq_len: int
    mode: str  # resolved word segmenter: jieba, tokenizer or none
    num_proc: int = 1

    def fingerprint(self, source: str, step: str) -> str:
        h = hashlib.sha256(json.dumps([CACHE_FORMAT, PACK_BATCH, step, source, self.seq_len, self.mode]).encode())
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            file = self.tokenizer_dir / name
            if file.is_file():
                h.update(file.read_bytes())
        return h.hexdigest()[:24]

    @property
    def id_dtype(self) -> str:
        return "uint16" if len(self.tokenizer) <= 2**16 else "int32"


def tokenized(corpus: Corpus, packing: Packing):
    """Per document: token ids (smallest dtype), word ids and its character count."""
    from datasets import Features, Sequence, Value

    features = Features(
        {"ids": Sequence(Value(packing.id_dtype)), "words": Sequence(Value("int32")), "characters": Value("int64")}
    )
    processes = _processes(packing.num_proc, len(corpus.texts))
    with quiet_datasets():
        return _arrow_map(
            corpus.texts,
            _tokenize_batch,
            batch_size=256,
            num_proc=processes,
            features=features,
            fn_kwargs={"tokenizer": packing.tokenizer, "mode": packing.mode, "id_dtype": packing.id_dtype},
            new_fingerprint=packing.fingerprint(corpus.texts._fingerprint, "tokenize"),
            desc=f"tokenizing {corpus.name}",
        )


def _tokenize_batch(batch, tokenizer, mode: str, id_dtype: str, release: bool):
    import pyarrow as pa

    texts = batch.column(TEXT).to_pylist()
    _release(batch, release)
    docs = tokenize_texts(texts, tokenizer, mode)
    return pa.table(
        {
            "ids": _lists([d.ids for d in docs], id_dtype),
            "words": _lists([d.words for d in docs], "int32"),
            "characters": pa.array([len(text) for text in texts], pa.int64()),
        }
    )


def _lists(arrays: list[np.ndarray], dtype: str):
    """One Arrow list array from numpy arrays, without a Python object per element."""
    import pyarrow as pa

    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays).astype(dtype) if arrays else np.empty(0, dtype=dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _unlisted(column) -> list[np.ndarray]:
    """The rows of an Arrow list column as numpy views."""
    column = column.combine_chunks()
    offsets, values = column.offsets.to_numpy(), column.values.to_numpy()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(column))]


def packed(tokens, packing: Packing):
    """Blocks of ``seq_len`` tokens from tokenized documents (see :func:`packing.pack`)."""
    from datasets import Features, Sequence, Value

    tokenizer = packing.tokenizer
    word_dtype = "int16" if packing.seq_len < 2**15 else "int32"
    features = Features(
        {
            "input_ids": Sequence(Value(packing.id_dtype), length=packing.seq_len),
            "word_ids": Sequence(Value(word_dtype), length=packing.seq_len),
            "length": Value("int32"),  # tokens before the padding: the attention mask
            "content": Value("int32"),  # document tokens (no [CLS], [SEP] or padding)
            "unknown": Value("int32"),  # [UNK] tokens
        }
    )
    special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    with quiet_datasets():
        return _arrow_map(
            tokens,
            _pack_batch,
            batch_size=PACK_BATCH,
            features=features,
            fn_kwargs={"seq_len": packing.seq_len, "special": special, "features": features},
            new_fingerprint=packing.fingerprint(tokens._fingerprint, "pack"),
            desc="packing",
        )


def _pack_batch(batch, seq_len: int, special: tuple, features, release: bool):
    import pyarrow as pa

    from longzoo.data.packing import TokenizedDoc

    cls_id, sep_id, pad_id, unk_id = special
    no_chars = np.empty(0, np.int16)  # characters are for evaluation; packing does not use them
    docs = [
        TokenizedDoc(ids, words, no_chars)
        for ids, words in zip(_unlisted(batch.column("ids")), _unlisted(batch.column("words")), strict=True)
    ]
    blocks = pack(docs, seq_len, cls_id, sep_id, pad_id)
    _release(batch, release)
    lengths = blocks.attention_mask.sum(axis=1, dtype=np.int32)
    separators = (blocks.input_ids == sep_id).sum(axis=1, dtype=np.int32)
    unknown = (blocks.input_ids == unk_id).sum(axis=1, dtype=np.int32) if unk_id is not None else lengths * 0

    def fixed(name: str, array: np.ndarray):
        dtype = features[name].feature.dtype
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1).astype(dtype)), seq_len)

    return pa.table(
        {
            "input_ids": fixed("input_ids", blocks.input_ids),
            "word_ids": fixed("word_ids", blocks.word_ids),
            "length": lengths,
            "content": lengths - 1 - separators,
            "unknown": unknown,
        }
    )


def column_sum(dataset, column: str) -> int:
    """The sum of an integer column, computed by Arrow without reading rows into Python."""
    import pyarrow.compute as pc

    return int(pc.sum(dataset.data.column(column)).as_py() or 0)


def token_count(tokens) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.list_value_length(tokens.data.column("ids"))).as_py() or 0)


class ArrowBlocks:
    """Packed blocks read row by row from their memory-mapped Arrow file (see ``MaskedBlocks``)."""

    def __init__(self, dataset):
        self.dataset = dataset.with_format("numpy", columns=["input_ids", "word_ids", "length"])
        self.seq_len = dataset.features["input_ids"].length

    def __len__(self) -> int:
        return len(self.dataset)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        item = self.dataset[int(i)]
        attention = (np.arange(len(item["input_ids"])) < item["length"]).astype(np.uint8)
        return item["input_ids"], item["word_ids"], attention


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
