"""The corpora of a pretraining run, prepared as Arrow files next to its output.

Each ``--corpus`` is read, cleaned, tokenized and packed on its own (see
:mod:`longzoo.data.arrow`), so adding a corpus to a rerun reuses the others' files; their
blocks are then concatenated.  ``--eval-split`` holds out a share of each training corpus's
documents before anything is tokenized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from longzoo.data.arrow import (
    TEXT,
    ArrowBlocks,
    Corpus,
    Packing,
    column_sum,
    held_out,
    load_texts,
    packed,
    token_count,
    tokenized,
)
from longzoo.data.corpus import Document
from longzoo.data.masking import resolve_mode
from longzoo.errors import LongzooError
from longzoo.progress import Steps
from longzoo.text import mostly_han
from longzoo.training.arguments import PretrainArguments

CHARS_PER_TOKEN_BUDGET = 8  # a streamed corpus is read up to 8 characters per token the run trains on


@dataclass
class PreparedCorpora:
    """Training (and evaluation) blocks with what the manifest and the warnings need."""

    train: ArrowBlocks
    stats: list[dict]  # per training corpus: name, hub_dataset, language, documents, tokens, characters
    mode: str  # the word segmenter used for masking
    real_tokens: int  # tokens in the training blocks before padding
    unknown_tokens: int
    eval: ArrowBlocks | None = None
    eval_names: list[str] = field(default_factory=list)
    eval_corpora: list[Corpus] = field(default_factory=list)

    def eval_documents(self) -> list[Document]:
        """The evaluation documents, in memory, for the before/after evaluation."""
        return [Document(text, c.name) for c in self.eval_corpora for text in c.texts[TEXT]]


def prepare(
    corpora: list[str],
    eval_corpora: list[str],
    tokenizer,
    tokenizer_dir: Path,
    seq_len: int,
    cache_dir: Path,
    args: PretrainArguments,
    steps: Steps,
) -> PreparedCorpora:
    """Read, split, tokenize and pack every corpus (reusing what earlier runs prepared)."""
    budget = args.max_steps * args.sequences_per_step * seq_len * CHARS_PER_TOKEN_BUDGET
    train = [load_texts(spec, cache_dir, char_budget=budget, num_proc=args.num_proc) for spec in corpora]
    evaluation = [load_texts(spec, cache_dir, char_budget=budget, num_proc=args.num_proc) for spec in eval_corpora]
    eval_names = [c.name for c in evaluation]
    if args.eval_split is not None:
        pairs = [held_out(corpus, args.eval_split, args.seed) for corpus in train]
        train, evaluation = [t for t, _ in pairs], [e for _, e in pairs]
        eval_names = [f"{c.name} (held-out {args.eval_split * 100:.3g}%)" for c in evaluation]
    for corpus in [*train, *evaluation] if args.process_index == 0 else []:
        _warn_if_cut(corpus, args, steps)
    mode = resolve_mode(args.wwm, tokenizer, train[0].sample(1)[0])
    packing = Packing(tokenizer, tokenizer_dir, seq_len, mode, args.num_proc)
    stats, train_blocks = [], []
    for corpus in train:
        tokens = tokenized(corpus, packing)
        stats.append(_stats(corpus, tokens))
        train_blocks.append(packed(tokens, packing))
    blocks = _concatenated(train_blocks)
    eval_blocks = _concatenated([packed(tokenized(c, packing), packing) for c in evaluation]) if evaluation else None
    return PreparedCorpora(
        train=ArrowBlocks(blocks),
        stats=stats,
        mode=mode,
        real_tokens=column_sum(blocks, "length"),
        unknown_tokens=column_sum(blocks, "unknown"),
        eval=ArrowBlocks(eval_blocks) if eval_blocks is not None else None,
        eval_names=eval_names,
        eval_corpora=evaluation,
    )


def _stats(corpus: Corpus, tokens) -> dict:
    return {
        "name": corpus.name,
        "hub_dataset": corpus.hub_dataset,
        "language": "zh" if mostly_han("".join(text[:2000] for text in corpus.sample(50))) else None,
        "documents": corpus.documents,
        "tokens": token_count(tokens),
        "characters": column_sum(tokens, "characters"),  # not the text column: no need to read it again
    }


def _concatenated(parts: list):
    from datasets import concatenate_datasets

    if not parts:
        raise LongzooError("no corpus to train on")
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def _warn_if_cut(corpus: Corpus, args: PretrainArguments, steps: Steps) -> None:
    from rich.markup import escape

    if corpus.cut_at is not None:
        steps.note(
            f"[yellow]warning:[/] {escape(corpus.name)}: streamed only its first {corpus.cut_at:,} characters "
            f"(about what {args.max_steps:,} steps read); the rest of the dataset is not used"
        )
