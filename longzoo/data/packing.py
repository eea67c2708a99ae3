"""Tokenizing documents once, packing them into fixed-length blocks, masking on the fly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longzoo.data.masking import apply_mask, random_pool, select_words, word_ids_for
from longzoo.quiet import quiet_transformers

CACHE_FORMAT = 3  # 3: Arrow files written by datasets' .map; 2: compact dtypes, word ids within each block


@dataclass
class TokenizedDoc:
    """One document's tokens: 10 bytes a token (int32 ids and words, int16 characters)."""

    ids: np.ndarray  # token ids, no special tokens
    words: np.ndarray  # word id per token (unique within the document), -1 for none
    chars: np.ndarray  # characters each token covers (for bits per character)


def tokenize_texts(texts: list[str], tokenizer, mode: str, batch: int = 64) -> list[TokenizedDoc]:
    """Tokenize every text once, with word ids from the chosen segmenter."""
    out = []
    with quiet_transformers():  # long documents exceed model_max_length on purpose
        for start in range(0, len(texts), batch):
            part = texts[start : start + batch]
            encoded = tokenizer(part, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            for text, encoding in zip(part, encoded.encodings, strict=True):
                offsets = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
                out.append(
                    TokenizedDoc(
                        ids=np.array(encoding.ids, dtype=np.int32),
                        words=word_ids_for(mode, text, encoding).astype(np.int32),
                        chars=(offsets[:, 1] - offsets[:, 0]).clip(min=0, max=2**15 - 1).astype(np.int16),
                    )
                )
    return out


@dataclass
class Blocks:
    """Packed training blocks, all ``seq_len`` long, in the smallest dtypes that hold them.

    5 bytes a token instead of 24: ids in uint16 for vocabularies up to 65,536 entries,
    word ids numbered within each block (int16 up to 32,767 tokens a block), the mask in
    uint8.  :class:`MaskedBlocks` widens one block at a time to what the model takes.
    """

    input_ids: np.ndarray  # (n, seq_len)
    word_ids: np.ndarray  # (n, seq_len), -1 for special and padding tokens
    attention_mask: np.ndarray  # (n, seq_len)

    def __len__(self) -> int:
        return len(self.input_ids)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.input_ids[i], self.word_ids[i], self.attention_mask[i]


def pack(docs: list[TokenizedDoc], seq_len: int, cls_id: int, sep_id: int, pad_id: int) -> Blocks:
    """Pack documents into ``[CLS] doc [SEP] doc [SEP] ... [PAD]`` blocks.

    Whole documents are preferred: a document that fits the rest of the current block
    joins it, one that fits a fresh block starts one (the current block is padded), and
    only documents longer than a block are cut, into full blocks plus a remainder that
    is packed like a short document.  No token is dropped.
    """
    room = seq_len - 1  # after [CLS]; each document also spends one [SEP]
    blocks: list[list[tuple[np.ndarray, np.ndarray]]] = []
    current: list[tuple[np.ndarray, np.ndarray]] = []
    used = 0
    word_base = 0

    def flush():
        nonlocal current, used
        if current:
            blocks.append(current)
        current, used = [], 0

    for doc in docs:
        words = np.where(doc.words >= 0, doc.words + word_base, -1)
        word_base += int(doc.words.max(initial=-1)) + 1
        ids = doc.ids
        while len(ids) + 1 > room:  # longer than a whole block: cut full blocks off
            flush()
            take = room - 1
            blocks.append([(ids[:take], words[:take])])
            ids, words = ids[take:], words[take:]
        if not len(ids):
            continue
        if used + len(ids) + 1 > room:
            flush()
        current.append((ids, words))
        used += len(ids) + 1
    flush()

    n = len(blocks)
    top = max([cls_id, sep_id, pad_id] + [int(doc.ids.max(initial=0)) for doc in docs])
    input_ids = np.full((n, seq_len), pad_id, dtype=np.uint16 if top < 2**16 else np.int32)
    word_ids = np.full((n, seq_len), -1, dtype=np.int16 if seq_len < 2**15 else np.int32)
    attention = np.zeros((n, seq_len), dtype=np.uint8)
    for b, parts in enumerate(blocks):
        pos = 1
        input_ids[b, 0] = cls_id
        row = np.full(seq_len, -1, dtype=np.int64)
        for ids, words in parts:
            input_ids[b, pos : pos + len(ids)] = ids
            row[pos : pos + len(ids)] = words
            pos += len(ids)
            input_ids[b, pos] = sep_id
            pos += 1
        attention[b, :pos] = 1
        word_ids[b] = _within_block(row)
    return Blocks(input_ids, word_ids, attention)


def _within_block(row: np.ndarray) -> np.ndarray:
    """A block's corpus-wide word ids renumbered 0, 1, ... in the same order (-1 stays -1).

    Masks draw over a block's words in sorted order, so an order-keeping renumbering draws
    the same masks, and the numbers stay below the block length however large the corpus.
    """
    valid = row >= 0
    ranks = np.full_like(row, -1)
    ranks[valid] = np.unique(row[valid], return_inverse=True)[1]
    return ranks


class MaskedBlocks:
    """A map-style dataset that masks each block anew every epoch, reproducibly.

    The mask of block ``i`` in epoch ``e`` comes from a generator seeded with
    ``(seed, e, i)``: the same on every run and on every rank, different each epoch.
    Set :attr:`epoch` at the start of each epoch (see ``EpochCallback``).  ``blocks`` is
    :class:`Blocks` or ``arrow.ArrowBlocks``: anything with ``len`` and ``row(i)``.
    """

    def __init__(self, blocks, tokenizer, *, mlm_prob: float, seed: int, global_cls: bool = False):
        self.blocks = blocks
        self.mlm_prob = mlm_prob
        self.seed = seed
        self.global_cls = global_cls
        self.mask_token_id = tokenizer.mask_token_id
        self.pool = random_pool(tokenizer)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, self.epoch, i])
        ids, words, attention = self.blocks.row(i)
        ids = ids.astype(np.int64)
        selected = select_words(words, rng, self.mlm_prob)
        inputs, labels = apply_mask(ids, words, selected, rng, self.mask_token_id, self.pool)
        item = {
            "input_ids": torch.from_numpy(inputs),
            "attention_mask": torch.from_numpy(attention.astype(np.int64)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
        }
        if self.global_cls:
            glob = torch.zeros(len(ids), dtype=torch.long)
            glob[0] = 1
            item["global_attention_mask"] = glob
        return item
