"""Sparse prediction: masked-LM logits only at the positions that are predicted.

A masked-LM head maps every position to the whole vocabulary (4096 × 21,128 logits for a
Chinese model at 4096 tokens, kept for backward), although only ~15 % of positions carry a
label.  Recent encoder recipes (ModernBERT, mmBERT) run the head on the masked positions
alone; the loss is the same sum over the same tokens, so only rounding differs.  Nothing
here changes a parameter: the model still saves as the stock class.
"""

from __future__ import annotations

import types

import torch
from transformers.modeling_outputs import MaskedLMOutput


def mlm_head(model):
    """The module that turns hidden states into vocabulary logits, where the class has a known one."""
    for name in ("lm_head", "cls"):  # Longformer / RoBERTa family; BERT
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


def sparse_logits(model, predict_mask, **inputs):
    """Logits ``(predicted tokens, vocabulary)`` for the positions where ``predict_mask`` is true."""
    where = predict_mask.to(torch.bool)
    head = mlm_head(model)
    if head is None:  # an unknown class: the full head, then the same positions
        return model(**inputs).logits[where]
    hidden = model.base_model(**inputs).last_hidden_state
    return head(hidden[where])


def use_sparse_prediction(model):
    """Let ``model`` take ``predict_mask``: its ``logits`` are then those of :func:`sparse_logits`.

    Without ``predict_mask`` it runs as before.  The Trainer calls ``model(**inputs)``, so the
    mask travels as an input; an instance attribute, so DDP and accelerate's autocast wrap it.
    """
    if getattr(model, "_longzoo_sparse", False):
        return model
    stock = model.forward

    def forward(self, *args, predict_mask=None, **kwargs):
        if predict_mask is None:
            return stock(*args, **kwargs)
        if args:
            raise TypeError("with predict_mask, pass the model's inputs by name")
        kwargs.pop("num_items_in_batch", None)  # the Trainer's loss argument; the loss is computed outside
        return MaskedLMOutput(logits=sparse_logits(self, predict_mask, **kwargs))

    model.forward = types.MethodType(forward, model)
    model._longzoo_sparse = True
    return model
