"""Weights that longzoo can vouch for: finite everywhere, new heads initialised on purpose.

transformers leaves a parameter that a checkpoint lacks and that no ``_init_weights``
covers (Longformer's standalone ``lm_head.bias``) as whatever the allocator handed out:
zeros on a lucky run, NaN or 1e2 garbage on another.  So every new head is initialised
here explicitly, and every model longzoo loads or writes passes :func:`require_finite`.
"""

from __future__ import annotations

from longzoo.errors import LongzooError


class NonFiniteError(LongzooError):
    """A tensor, loss or gradient holds NaN or infinity."""


def first_non_finite(tensors) -> str | None:
    """The name of the first floating tensor of ``(name, tensor)`` pairs with a NaN or inf."""
    import torch

    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def require_finite_files(folder) -> None:
    """Every tensor of the folder's safetensors files is finite (read one tensor at a time)."""
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as fh:
                bad = first_non_finite((key, fh.get_tensor(key)) for key in fh.keys())
        except SafetensorError as exc:
            raise LongzooError(f"{path}: not a readable safetensors file ({exc})") from None
        if bad is not None:
            raise NonFiniteError(f"{path}: tensor {bad} holds NaN or infinity; this model must not be published")


def require_finite(model, where: str) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer that is not finite."""
    bad = first_non_finite(model.state_dict().items())
    if bad is not None:
        raise NonFiniteError(f"{where}: tensor {bad} holds NaN or infinity; nothing was written")


# The MLM head's transform, its layer norm and its output bias, by head: Longformer and the
# RoBERTa family (``lm_head``), BERT (``cls.predictions``).
_HEADS = (
    ("lm_head.dense", "lm_head.layer_norm", "lm_head.bias"),
    ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions.bias"),
)
# Prefixes of every MLM-head key (the decoder included): where each head's output bias lives.
MLM_HEADS = tuple(bias.rsplit(".", 1)[0] + "." for _, _, bias in _HEADS)


def _head_of(model) -> tuple[str, str, str]:
    names = dict(model.named_parameters())
    for head in _HEADS:
        if f"{head[0]}.weight" in names:
            return head
    raise LongzooError(f"{type(model).__name__} has no MLM head longzoo knows")


def _head_keys(head: tuple[str, str, str]) -> set[str]:
    dense, norm, _ = head
    return {f"{dense}.weight", f"{dense}.bias", f"{norm}.weight", f"{norm}.bias"}


def complete_mlm_head(model, missing_keys, seed: int = 0) -> bool:
    """Initialise an MLM head that the checkpoint lacked; True when it was new.

    A head the checkpoint holds only in part is an error: mixing trained and fresh parts
    would be a head nobody asked for.
    """
    expected = _head_keys(_head_of(model))
    missing = expected & set(missing_keys)
    if missing == expected:
        init_new_mlm_head(model, seed)
        return True
    if missing:
        raise LongzooError(f"the MLM head is incomplete (missing {sorted(missing)})")
    model.tie_weights()
    return False


def init_new_mlm_head(model, seed: int) -> None:
    """Give a freshly created MLM head defined values, as BERT's recipe does.

    The transform layer draws from N(0, initializer_range) with a zero bias, the layer norm
    starts as the identity, the output bias at zero and the decoder is tied to the word
    embeddings.  A seeded generator keeps the head the same on every rank and every rerun.
    """
    import torch

    dense_name, norm_name, bias_name = _head_of(model)
    dense, norm = model.get_submodule(dense_name), model.get_submodule(norm_name)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = torch.empty(dense.weight.shape).normal_(0.0, model.config.initializer_range, generator=generator)
        dense.weight.copy_(weight)
        dense.bias.zero_()
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        model.get_parameter(bias_name).zero_()
    model.tie_weights()  # decoder weight = word embeddings, decoder bias = the head's bias
