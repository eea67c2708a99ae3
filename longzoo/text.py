"""Facts about text and vocabularies shared by masking and model cards."""

from __future__ import annotations

from collections.abc import Iterable


def is_han(ch: str) -> bool:
    """A CJK unified ideograph (the basic block or extension A)."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def mostly_han(text: str, share: float = 0.5) -> bool:
    """True when most non-space characters of ``text`` are Han characters."""
    chars = [ch for ch in text[:20000] if not ch.isspace()]
    return bool(chars) and sum(map(is_han, chars)) >= share * len(chars)


def chinese_vocabulary(pieces: Iterable[str]) -> bool:
    """A Chinese BERT-style vocabulary: at least 30% of its entries hold a Han character.

    Multilingual vocabularies (mBERT, XLM-R) also contain Han characters, but only as a
    small share, so they are not taken for Chinese.
    """
    pieces = list(pieces)
    han = sum(1 for piece in pieces if any(map(is_han, piece)))
    return han >= 0.3 * max(len(pieces), 1)
