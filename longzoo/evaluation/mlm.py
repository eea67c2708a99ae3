"""Masked-LM evaluation that compares short, converted and pretrained models fairly.

Masks are drawn per *document* from a fixed seed, before any window is cut, so every
model predicts exactly the same tokens of the same text.  A model then reads each
document through windows of its own length: a Longformer through ``seq_len``-token
windows, a short base model through its native 512 (say).  Windows overlap by half and
each masked token is scored once, in the window where it has the most left context, so
a short model is not penalised for cut-off context more than it must be.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from longzoo.converters.adapters import usable_positions
from longzoo.data.corpus import Document, read_corpus
from longzoo.data.masking import IGNORE_INDEX, apply_mask, random_pool, resolve_mode, select_words
from longzoo.data.packing import TokenizedDoc, tokenize_texts
from longzoo.errors import LongzooError
from longzoo.models.sparse import sparse_logits
from longzoo.numbers import require_int, require_number
from longzoo.quiet import quiet_transformers

EVAL_SEED = 20_040_515  # fixed, so that runs compare


def load_mlm(model_dir: str | Path, attention: str = "fast"):
    """Model and tokenizer of a folder with a masked-LM head (Longformer or a short base).

    A Longformer computes its attention with longzoo's fast path unless ``attention`` is
    ``"reference"``; a short base model is used as it is.
    """
    from transformers import AutoModelForMaskedLM

    from longzoo.models.folders import load_tokenizer, model_config
    from longzoo.weights import MLM_HEADS, require_finite

    folder = Path(model_dir)
    config = model_config(folder)
    tokenizer = load_tokenizer(folder, config)
    try:
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    except ValueError as exc:
        raise LongzooError(f"{model_dir}: {config.model_type} has no masked-LM form ({exc})") from None
    head_missing = [k for k in info["missing_keys"] if k.startswith(MLM_HEADS)]
    if head_missing:
        raise LongzooError(f"{model_dir}: the model has no MLM head to evaluate (encoder-only)")
    require_finite(model, str(model_dir))
    if attention == "fast" and config.model_type == "longformer":
        from longzoo.models.attention import use_fast_attention

        use_fast_attention(model)
    return model.eval(), tokenizer


def record_evaluation(model_dir: str | Path, corpora: list[str], metrics: dict) -> bool:
    """Add ``metrics`` to the ``evaluations`` of a longzoo folder and refresh its card.

    Returns False (and writes nothing) for a folder longzoo did not write, such as a short
    base model evaluated for comparison.
    """
    from longzoo.cards.render import render_card
    from longzoo.data.corpus import corpus_name, hub_dataset_id
    from longzoo.manifest import MANIFEST, add_evaluation, read_manifest, write_manifest
    from longzoo.records import Evaluation

    folder = Path(model_dir)
    if not (folder / MANIFEST).is_file():
        return False
    hub = [h for h in (hub_dataset_id(c) for c in corpora) if h]
    corpus = ", ".join(corpus_name(c) for c in corpora)
    manifest = add_evaluation(
        read_manifest(folder), Evaluation(corpus=corpus, hub_dataset=hub[0] if hub else None, **metrics)
    )
    write_manifest(folder, manifest)
    if manifest.convert is not None:
        render_card(folder, strict=False)
    return True


def evaluate(
    model_dir: str | Path,
    corpora: list[str],
    *,
    seq_len: int | None = None,
    wwm: str = "auto",
    mlm_prob: float = 0.15,
    seed: int = EVAL_SEED,
    batch_size: int = 2,
    attention: str = "fast",
    model=None,
    tokenizer=None,
    documents: list[Document] | None = None,
) -> dict:
    """MLM loss, bits per token and per character, and accuracy on ``corpora`` (or ``documents``).

    Returns ``{"loss", "bpc", "bits_per_char", "mlm_accuracy", "tokens", "characters",
    "predicted", "documents", "window", "wwm"}``; ``bpc`` is ``loss / ln 2`` (bits per
    predicted token, the Longformer paper's "BPC").
    """
    require_int("seq_len", seq_len, low=8, optional=True)
    require_number("mlm_prob", mlm_prob, low=0.0, high=1.0, open_low=True, open_high=True)
    if attention not in ("fast", "reference"):
        raise LongzooError("--attention must be fast or reference")
    if model is None:
        model, tokenizer = load_mlm(model_dir, attention)
    limit = usable_positions(model.config)
    window = min(seq_len or limit, limit)
    if seq_len and seq_len > limit:
        raise LongzooError(f"--seq-len {seq_len} is above the model's {limit} positions")
    if documents is None:
        documents = [doc for spec in corpora for doc in read_corpus(spec)]
    mode = resolve_mode(wwm, tokenizer, documents[0].text)
    docs = tokenize_texts([d.text for d in documents], tokenizer, mode)
    windows = list(_scored_windows(docs, tokenizer, window - 2, mlm_prob, seed))
    nats, correct, predicted, chars = _score(model, tokenizer, windows, batch_size)
    if predicted == 0:
        raise LongzooError("the evaluation corpus is too short: no token was masked")
    loss = nats / predicted
    return {
        "loss": loss,
        "bpc": loss / math.log(2),
        "bits_per_char": nats / math.log(2) / max(chars, 1),
        "mlm_accuracy": correct / predicted,
        "tokens": int(sum(len(d.ids) for d in docs)),
        "characters": int(sum(len(d.text) for d in documents)),
        "predicted": int(predicted),
        "documents": len(documents),
        "window": window,
        "wwm": mode,
    }


def document_masks(docs: list[TokenizedDoc], tokenizer, mlm_prob: float, seed: int):
    """The fixed masked inputs and labels of every document."""
    pool = random_pool(tokenizer)
    for index, doc in enumerate(docs):
        rng = np.random.default_rng([seed, index])
        selected = select_words(doc.words, rng, mlm_prob)
        yield apply_mask(doc.ids, doc.words, selected, rng, tokenizer.mask_token_id, pool)


def _scored_windows(docs, tokenizer, content: int, mlm_prob: float, seed: int):
    """``(input_ids, labels, chars)`` per window; labels only where the token is scored."""
    stride = max(1, content // 2)
    for doc, (inputs, labels) in zip(docs, document_masks(docs, tokenizer, mlm_prob, seed), strict=True):
        n = len(inputs)
        start = 0
        while True:
            end = min(start + content, n)
            first_scored = 0 if start == 0 else start + content - stride
            scored = np.full(end - start, IGNORE_INDEX)
            part = labels[start:end]
            keep = np.arange(start, end) >= first_scored
            scored[keep] = part[keep]
            chars = np.where(scored != IGNORE_INDEX, doc.chars[start:end], 0)
            yield (
                np.concatenate([[tokenizer.cls_token_id], inputs[start:end], [tokenizer.sep_token_id]]),
                np.concatenate([[IGNORE_INDEX], scored, [IGNORE_INDEX]]),
                int(chars.sum()),
            )
            if end >= n:
                break
            start += stride


def _score(model, tokenizer, windows, batch_size: int):
    import torch

    nats = 0.0
    correct = predicted = chars = 0
    with quiet_transformers():  # Longformer warns about padding to its window
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                group = windows[start : start + batch_size]
                width = max(len(ids) for ids, _, _ in group)
                ids = torch.full((len(group), width), tokenizer.pad_token_id, dtype=torch.long)
                labels = torch.full((len(group), width), IGNORE_INDEX, dtype=torch.long)
                mask = torch.zeros((len(group), width), dtype=torch.long)
                for row, (window_ids, window_labels, window_chars) in enumerate(group):
                    ids[row, : len(window_ids)] = torch.from_numpy(window_ids)
                    labels[row, : len(window_labels)] = torch.from_numpy(window_labels)
                    mask[row, : len(window_ids)] = 1
                    chars += window_chars
                if not (labels != IGNORE_INDEX).any():
                    continue
                where = labels != IGNORE_INDEX
                logits = sparse_logits(model, where, input_ids=ids, attention_mask=mask).float()
                picked = torch.log_softmax(logits, dim=-1)
                target = labels[where]
                nats -= float(picked.gather(1, target[:, None]).sum())
                correct += int((picked.argmax(-1) == target).sum())
                predicted += int(where.sum())
    return nats, correct, predicted, chars
