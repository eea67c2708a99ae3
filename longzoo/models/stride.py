"""The chunk-and-stride baseline: a short encoder over overlapping chunks, pooled by a small transformer.

What users do with a 512-token model and a long document: cut the tokens into chunks of
``L`` that overlap by ``S`` (:func:`chunk_documents`, the fast tokenizer's own overflow;
:func:`chunk_spans` is the same arithmetic, for sizes), encode each
chunk with the short model, let a small transformer mix the chunks' first-token vectors
(with a learned chunk-position embedding), average the real chunks
(:func:`masked_mean`) and classify.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from longzoo.errors import LongzooError
from longzoo.quiet import quiet_transformers


def chunk_documents(texts: list[str], tokenizer, chunk_len: int, overlap: int, max_chunks: int, max_tokens: int):
    """Each text's first ``max_tokens`` tokens as model inputs of at most ``chunk_len`` tokens.

    The fast tokenizer cuts them itself (``truncation`` with ``stride`` and
    ``return_overflowing_tokens``): each chunk carries the tokenizer's specials and shares
    ``overlap`` tokens with the one before; a document keeps its first ``max_chunks``.  The
    chunk that crosses ``max_tokens`` is trimmed there, so the baseline reads exactly the
    long model's tokens (cutting the text instead cannot split a character that a byte-level
    tokenizer spreads over several tokens).
    """
    if not tokenizer.is_fast:
        raise LongzooError("the stride baseline needs a fast tokenizer (tokenizer.json) for the short model")
    room = chunk_len - tokenizer.num_special_tokens_to_add()
    step = room - overlap  # content tokens between chunk starts
    with quiet_transformers():  # "sequence longer than the model" is the point here
        encoded = tokenizer(
            texts,
            max_length=chunk_len,
            truncation=True,
            stride=overlap,
            return_overflowing_tokens=True,
            return_special_tokens_mask=True,
        )
    chunks: list[list[list[int]]] = [[] for _ in texts]
    rows = zip(encoded["input_ids"], encoded["special_tokens_mask"], encoded["overflow_to_sample_mapping"], strict=True)
    for ids, specials, doc in rows:
        start = len(chunks[doc]) * step  # this chunk's first content token, in the whole document
        if chunks[doc] and (start - step + room >= max_tokens or len(chunks[doc]) >= max_chunks):
            continue  # the chunk before already reached the end of what the long model reads
        chunks[doc].append(_first_content(ids, specials, max_tokens - start))
    return chunks


def _first_content(ids: list[int], specials: list[int], keep: int) -> list[int]:
    """``ids`` with its specials and only its first ``keep`` content tokens."""
    kept, result = 0, []
    for token, special in zip(ids, specials, strict=True):
        if special or kept < keep:
            result.append(token)
            kept += not special
    return result


class ChunkStrideClassifier(nn.Module):
    """Document classifier over chunk embeddings of a short ``encoder`` (an ``AutoModel``).

    ``forward`` takes ``input_ids`` / ``attention_mask`` of shape (documents, chunks,
    tokens) and ``chunk_mask`` (documents, chunks); padding chunks are neither encoded nor
    pooled.  Multi-label tasks train with a sigmoid per class, others with a softmax.
    """

    def __init__(self, encoder, num_labels: int, *, max_chunks: int, multi_label: bool, layers: int = 1):
        super().__init__()
        hidden = encoder.config.hidden_size
        heads = next(h for h in (8, 4, 2, 1) if hidden % h == 0)
        self.encoder = encoder
        self.multi_label = multi_label
        self.chunk_positions = nn.Embedding(max_chunks, hidden)
        nn.init.normal_(self.chunk_positions.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.1, batch_first=True)
        self.pool = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids, attention_mask, chunk_mask, labels=None):
        docs, chunks, _ = input_ids.shape
        real = chunk_mask.bool()
        # Encode only the real chunks; padding chunks stay zero vectors.
        encoded = self.encoder(input_ids=input_ids[real], attention_mask=attention_mask[real]).last_hidden_state[:, 0]
        vectors = encoded.new_zeros(docs, chunks, encoded.shape[-1])
        vectors[real] = encoded
        vectors = vectors + self.chunk_positions(torch.arange(chunks, device=vectors.device))
        mixed = self.pool(vectors, src_key_padding_mask=~real)
        logits = self.classifier(self.dropout(masked_mean(mixed, real)))
        loss = None
        if labels is not None:
            if self.multi_label:
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


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
