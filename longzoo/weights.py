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


_HEAD = {"lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias"}


def complete_mlm_head(model, missing_keys, seed: int = 0) -> bool:
    """Initialise a Longformer's MLM head that the checkpoint lacked; True when it was new.

    A head the checkpoint holds only in part is an error: mixing trained and fresh parts
    would be a head nobody asked for.
    """
    missing = _HEAD & set(missing_keys)
    if missing == _HEAD:
        init_new_mlm_head(model, seed)
        return True
    if missing:
        raise LongzooError(f"the MLM head is incomplete (missing {sorted(missing)})")
    model.tie_weights()
    return False


def init_new_mlm_head(model, seed: int) -> None:
    """Give a Longformer's freshly created MLM head defined values, as BERT's recipe does.

    The transform layer draws from N(0, initializer_range) with a zero bias, the layer norm
    starts as the identity, the output bias at zero and the decoder is tied to the word
    embeddings.  A seeded generator keeps the head the same on every rank and every rerun.
    """
    import torch

    head = model.lm_head
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = torch.empty(head.dense.weight.shape).normal_(0.0, model.config.initializer_range, generator=generator)
        head.dense.weight.copy_(weight)
        head.dense.bias.zero_()
        head.layer_norm.weight.fill_(1.0)
        head.layer_norm.bias.zero_()
        head.bias.zero_()
    model.tie_weights()  # decoder weight = word embeddings, decoder bias = lm_head.bias
