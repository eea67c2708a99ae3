"""Whole-word masking that works for Chinese.

transformers' own grouping treats a run of Han characters as one "word" (there are no
spaces), so Chinese whole-word masking needs real word boundaries.  Here each token gets
a word id from one of three segmenters:

* ``jieba``: the text is segmented by jieba and each token joins the word that contains
  its first character (through the fast tokenizer's offsets);
* ``tokenizer``: the tokenizer's own pre-tokenized words (RoBERTa's ``Ġ`` words);
* ``none``: every token is its own word (plain token-level MLM).

Selection then takes whole words in random order until ~``mlm_prob`` of the tokens are
chosen, and each chosen word is, as a whole, replaced by the mask token (80%), by random
tokens (10%) or kept (10%).  Every draw comes from a generator seeded by the caller, so a
mask is reproducible from ``(seed, epoch, example)`` and new in every epoch.
"""

from __future__ import annotations

import logging

import numpy as np

from longzoo.choices import Wwm
from longzoo.errors import LongzooError
from longzoo.numbers import require_int, require_number
from longzoo.text import chinese_vocabulary, mostly_han

WWM_MODES = Wwm.values()
IGNORE_INDEX = -100  # label value the loss skips


def resolve_mode(mode: str, tokenizer, sample_text: str = "") -> str:
    """Turn ``auto|jieba|none`` into the segmenter used: ``jieba``, ``tokenizer`` or ``none``."""
    Wwm.require("--wwm", mode)
    if mode == "auto":
        return "jieba" if chinese_vocabulary(tokenizer.get_vocab()) or mostly_han(sample_text) else "tokenizer"
    return mode


def jieba_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of jieba's words in ``text`` (jieba's default, precise mode)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO
    return [(start, end) for _, start, end in jieba.tokenize(text)]


def word_ids_from_spans(offsets, spans: list[tuple[int, int]]) -> np.ndarray:
    """Word index for each token: the span holding the token's first character, -1 for none.

    ``offsets`` are the fast tokenizer's ``(start, end)`` character offsets; special
    tokens have empty offsets and get -1.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if not spans:
        return np.full(len(offsets), -1, dtype=np.int64)
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    # the last span starting at or before the token's first character (spans are sorted) ...
    j = np.searchsorted(bounds[:, 0], offsets[:, 0], side="right") - 1
    # ... holds the token when that character lies inside it; empty offsets hold nothing
    inside = (j >= 0) & (offsets[:, 0] < bounds[np.maximum(j, 0), 1]) & (offsets[:, 1] > offsets[:, 0])
    return np.where(inside, j, -1)


def word_ids_for(mode: str, text: str, encoding) -> np.ndarray:
    """Word ids of one tokenized text (a fast-tokenizer encoding with offsets)."""
    offsets = encoding.offsets
    if mode == "jieba":
        return word_ids_from_spans(offsets, jieba_spans(text))
    if mode == "tokenizer":
        return np.array([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)
    return np.array([i if end > start else -1 for i, (start, end) in enumerate(offsets)], dtype=np.int64)


def select_words(word_ids: np.ndarray, rng: np.random.Generator, mlm_prob: float = 0.15) -> np.ndarray:
    """Choose whole words in random order until about ``mlm_prob`` of the tokens are chosen.

    Returns a boolean mask over tokens ("selected for prediction").  A word larger than
    what is still needed is skipped in favour of smaller ones, so the share stays close
    to ``mlm_prob`` even with long words.
    """
    eligible = word_ids >= 0
    selected = np.zeros(len(word_ids), dtype=bool)
    total = int(eligible.sum())
    if total == 0:
        return selected
    target = max(1, int(round(mlm_prob * total)))
    words, sizes = np.unique(word_ids[eligible], return_counts=True)
    chosen = []
    count = 0
    for k in rng.permutation(len(words)):
        if count >= target:
            break
        if count and count + sizes[k] > target:
            continue
        chosen.append(words[k])
        count += sizes[k]
    selected[np.isin(word_ids, chosen) & eligible] = True
    return selected


def apply_mask(
    input_ids: np.ndarray,
    word_ids: np.ndarray,
    selected: np.ndarray,
    rng: np.random.Generator,
    mask_token_id: int,
    random_pool: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """80/10/10 replacement, decided per selected word; returns ``(inputs, labels)``.

    ``random_pool`` holds the ids a "random" replacement may take (see :func:`random_pool`).
    """
    inputs = input_ids.copy()
    labels = np.where(selected, input_ids, IGNORE_INDEX)
    words = np.unique(word_ids[selected])
    fate = rng.random(len(words))
    masked_words = words[fate < 0.8]
    random_words = words[(fate >= 0.8) & (fate < 0.9)]
    inputs[selected & np.isin(word_ids, masked_words)] = mask_token_id
    randomize = selected & np.isin(word_ids, random_words)
    if randomize.any():
        inputs[randomize] = rng.choice(random_pool, size=int(randomize.sum()))
    return inputs, labels


def random_pool(tokenizer) -> np.ndarray:
    """Ids a random replacement may use: the tokenizer's vocabulary minus special tokens."""
    special = set(tokenizer.all_special_ids)
    return np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)


def show_mask(model_dir, text: str, *, wwm: str = "auto", seed: int = 0, mlm_prob: float = 0.15):
    """Tokens of ``text`` and which of them the masking selects (``longzoo mask``)."""
    from pathlib import Path

    from longzoo.models.folders import load_tokenizer

    if not text.strip():
        raise LongzooError("--text is empty")
    require_number("mlm_prob", mlm_prob, low=0.0, high=1.0, open_low=True, open_high=True)
    require_int("seed", seed, low=0, high=2**32 - 1)
    tokenizer = load_tokenizer(Path(model_dir))
    mode = resolve_mode(wwm, tokenizer, text)
    encoded = tokenizer(text, return_offsets_mapping=True)
    words = word_ids_for(mode, text, encoded.encodings[0])
    selected = select_words(words, np.random.default_rng(seed), mlm_prob)
    return encoded.tokens(), selected.tolist(), mode
