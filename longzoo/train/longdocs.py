"""Building blocks for long-document evaluation (issue 7, in progress).

* :func:`chunk_spans` — the chunk-and-stride baseline's windows over a document;
* :func:`masked_mean` — pooling chunk embeddings while ignoring padding chunks;
* :func:`long_range_probe` — documents whose label is decided only beyond position 512.

The ``longzoo finetune`` command, the baselines built on these and the benchmark are not
written yet.
"""

from __future__ import annotations

import math
import random

FILLER = (
    "the a river town bridge morning council engineer report stone water street lamp boat "
    "market window road hall school teacher child letter paper table evening summer winter"
).split()
CUES = ("alpha", "omega")  # label 0 / label 1


def chunk_spans(n_tokens: int, length: int, stride: int, max_chunks: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of chunks of ``length`` tokens that overlap by ``stride`` tokens.

    Chunks start every ``length - stride`` tokens until one reaches the end, so
    ``1 + ceil(max(0, n - length) / (length - stride))`` chunks cover ``n`` tokens;
    ``max_chunks`` keeps only the first ones.
    """
    if length <= 0 or not 0 <= stride < length:
        raise ValueError(f"need length > 0 and 0 <= stride < length, got length={length}, stride={stride}")
    step = length - stride
    count = 1 + math.ceil(max(0, n_tokens - length) / step)
    if max_chunks is not None:
        count = min(count, max_chunks)
    return [(i * step, min(i * step + length, n_tokens)) for i in range(count)]


def masked_mean(embeddings, mask):
    """Mean over chunks of ``embeddings`` (B, C, H) where ``mask`` (B, C) is 1; padding chunks add nothing."""
    weights = mask.to(embeddings.dtype).unsqueeze(-1)
    return (embeddings * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def long_range_probe(
    n_documents: int, *, words: int = 900, cue_after: int = 600, seed: int = 0
) -> list[tuple[str, int]]:
    """Documents of filler words with one cue word, placed after word ``cue_after``, deciding the label.

    The filler is drawn from the same distribution for both labels, so a model that
    sees only the first 512 tokens (the filler words are single tokens in common
    vocabularies) is at chance by construction; labels alternate, so classes balance.
    """
    if not 0 <= cue_after < words:
        raise ValueError("the cue must fall inside the document")
    rng = random.Random(seed)
    documents = []
    for index in range(n_documents):
        label = index % 2
        text = [rng.choice(FILLER) for _ in range(words)]
        text[rng.randrange(cue_after, words)] = CUES[label]
        documents.append((" ".join(text), label))
    return documents
