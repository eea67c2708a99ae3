"""The chunk-and-stride baseline: a short encoder over overlapping chunks, pooled by a small transformer.

What users do with a 512-token model and a long document: cut the tokens into chunks of
``L`` that overlap by ``S`` (:func:`~longzoo.train.longdocs.chunk_spans`), encode each
chunk with the short model, let a small transformer mix the chunks' first-token vectors
(with a learned chunk-position embedding), average the real chunks
(:func:`~longzoo.train.longdocs.masked_mean`) and classify.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from longzoo.train.longdocs import chunk_spans, masked_mean


def with_special_tokens(tokenizer):
    """A function wrapping content ids in the tokenizer's own single-sequence specials.

    (``[CLS] … [SEP]``, ``<s> … </s>``), read off the encoding of an empty text, which
    works for every tokenizer class, slow or fast.
    """
    empty = tokenizer("")["input_ids"]
    content = len(empty) - tokenizer.num_special_tokens_to_add()  # 0 unless "" yields a token
    prefix, suffix = empty[:1], empty[1 + content :]
    return lambda ids: prefix + list(ids) + suffix


def chunk_document(ids: list[int], tokenizer, chunk_len: int, overlap: int, max_chunks: int) -> list[list[int]]:
    """Token ids of one document (no special tokens) as model inputs of at most ``chunk_len`` tokens."""
    room = chunk_len - tokenizer.num_special_tokens_to_add()
    spans = chunk_spans(max(1, len(ids)), room, overlap, max_chunks)
    wrap = with_special_tokens(tokenizer)
    return [wrap(ids[start:end]) for start, end in spans]


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
