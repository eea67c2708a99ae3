"""A faster, exact computation for transformers' ``LongformerSelfAttention``.

transformers computes the sliding window with chunked matmuls that pad heavily and
barely speed up with smaller windows.  Here each block of ``w`` queries (``w`` = the
one-sided window) attends, through ``scaled_dot_product_attention``, to the three key
blocks around it plus the row's global tokens, with an exact boolean band mask — the same
function as transformers' (two-sided window, padding, global tokens that attend to all
and are attended by all with their own ``*_global`` projections, per-layer windows,
dropout on the attention probabilities), at a fraction of the work.

A second backend computes the same band with ``flex_attention`` and a block mask (compiled
with ``torch.compile``).  It has no dropout and, on CPU, no backward, so it serves CUDA and
CPU inference.  ``auto`` takes it on CUDA when no attention dropout is active and the SDPA
blocks everywhere else: on CPU compiled flex_attention is only on par up to 4k tokens
(``BENCHMARKS.md``) and every new shape costs a compilation.

``use_fast_attention(model)`` swaps the class of every ``LongformerSelfAttention`` in a
model to :class:`FastLongformerSelfAttention`, which keeps the parameters (and so the
checkpoint format) and the class name (device maps keep modules whole by name), and only
replaces ``forward``, also under accelerate's hooks; ``use_reference_attention`` swaps back.
Calls that ask for ``output_attentions`` use the reference computation.  Under
``torch.compile`` the SDPA blocks give transformers' gradients too (see ``_key_blocks``).
"""

from __future__ import annotations

import weakref
from types import MethodType

import torch
import torch.nn.functional as F
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from longzoo.errors import LongzooError

BACKENDS = ("auto", "sdpa", "flex")
# flex_attention's tile; the block mask is built at this granularity.
FLEX_BLOCK = 128


class FastLongformerSelfAttention(LongformerSelfAttention):
    """``LongformerSelfAttention`` with a blocked-SDPA forward; same parameters."""

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        is_index_masked=None,
        is_index_global_attn=None,
        is_global_attn=None,
        output_attentions=False,
    ):
        if output_attentions:
            return super().forward(
                hidden_states, attention_mask, is_index_masked, is_index_global_attn, is_global_attn, output_attentions
            )
        compute = flex_band_attention if _use_flex(self, hidden_states) else band_attention
        return (compute(self, hidden_states, is_index_masked, is_index_global_attn, bool(is_global_attn)),)


# accelerate's device maps (transformers lists ``LongformerSelfAttention`` in ``_no_split_modules``),
# FSDP's wrap policies and DeepSpeed pick the modules to keep whole by class *name*; under a name
# of its own the swapped module would be split across devices.  Keeping the name, rather than
# adding ours to the model's ``_no_split_modules``, also covers the lists users write themselves
# and modules passed to use_fast_attention without their PreTrainedModel.  ``__qualname__`` is
# unchanged, so pickle still finds this class.
FastLongformerSelfAttention.__name__ = LongformerSelfAttention.__name__


def _flex_exact(module, hidden) -> bool:
    """flex_attention has no dropout, and no backward on CPU."""
    if module.training and module.dropout > 0:
        return False
    return hidden.device.type == "cuda" or not torch.is_grad_enabled()


def _use_flex(module, hidden) -> bool:
    backend = getattr(module, "_longzoo_backend", "auto")
    if backend == "sdpa":
        return False
    if backend == "flex":
        if not _flex_exact(module, hidden):
            raise LongzooError(
                "the flex attention backend has no attention dropout and no CPU backward; "
                "use backend 'auto' or 'sdpa' for this call"
            )
        return True
    return hidden.device.type == "cuda" and _flex_exact(module, hidden)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, length, _ = x.shape
    return x.view(batch, length, num_heads, -1).transpose(1, 2)  # (B, H, L, d)


def band_attention(attn, hidden, is_masked, is_global, has_global: bool) -> torch.Tensor:
    """Longformer self-attention of one layer, computed block by block with SDPA.

    ``hidden`` is (B, L, D); ``is_masked`` / ``is_global`` are (B, L) booleans (padding,
    global tokens) as transformers' encoder computes them.  Returns (B, L, D).
    """
    batch, length, dim = hidden.shape
    w = attn.one_sided_attn_window_size
    heads = attn.num_heads
    dropout = attn.dropout if attn.training else 0.0
    q = _heads(attn.query(hidden), heads)
    k = _heads(attn.key(hidden), heads)
    v = _heads(attn.value(hidden), heads)

    # Pad to whole blocks of w; the padding is masked like transformers' own padding.
    pad = (-length) % w
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        is_masked = F.pad(is_masked, (0, pad), value=True)
        is_global = F.pad(is_global, (0, pad), value=False)
    blocks = (length + pad) // w

    k_glob = v_glob = None
    if has_global:
        order, valid = _global_slots(is_global)  # a graph break under torch.compile
        gather = order[:, None, :, None].expand(-1, heads, -1, k.shape[-1])
        k_glob, v_glob = torch.gather(k, 2, gather), torch.gather(v, 2, gather)  # (B, H, G, d)
    k_win, v_win = _key_blocks(k, w, k_glob), _key_blocks(v, w, v_glob)  # (B, blocks, H, [G +] 3w, d)
    allowed = _band_mask(is_masked, is_global, w)  # (B, blocks, w, 3w)
    if has_global:
        allowed = torch.cat([valid[:, None, None, :].expand(-1, blocks, w, -1), allowed], dim=-1)

    keys = k_win.shape[-2]
    # reshape, not view: free here, and inductor may lay out a one-input cat (no global tokens) otherwise
    out = F.scaled_dot_product_attention(
        q.reshape(batch, heads, blocks, w, -1).transpose(1, 2).reshape(batch * blocks, heads, w, -1),
        k_win.reshape(batch * blocks, heads, keys, -1),
        v_win.reshape(batch * blocks, heads, keys, -1),
        attn_mask=allowed.reshape(batch * blocks, 1, w, keys),
        dropout_p=dropout,
    )  # (B*blocks, H, w, d)
    out = out.view(batch, blocks, heads, w, -1).permute(0, 1, 3, 2, 4).reshape(batch, blocks * w, dim)
    out = out.masked_fill(is_masked[..., None], 0.0)[:, :length]
    if has_global:
        out = _global_rows(attn, hidden, out, is_masked[:, :length], is_global[:, :length], dropout)
    return out


# Why the windows are copied at once and no overlapping view (``unfold``, ``expand``) leaves the
# function that makes it: under torch.compile, the values alive across a graph break (there is
# one at the global-token count) become outputs of a compiled graph, and AOTAutograd copies the
# gradient arriving at such an output into the output's own memory layout (torch 2.13:
# ``coerce_to_expected_memory_format``, ``empty_strided(...).copy_``).  In an overlapping
# layout, elements that share memory then share one gradient: all but one are lost, silently.


def _key_blocks(x, w: int, glob=None) -> torch.Tensor:
    """The keys each block of ``w`` queries attends to: (B, H, blocks*w, d) -> (B, blocks, H, [G +] 3w, d).

    Block t gets ``glob`` (B, H, G, d) if given, then blocks t-1, t, t+1 (zeros beyond the ends),
    in one contiguous copy laid out as SDPA takes it.  ``unfold``'s backward sums the overlapping
    windows in one pass: faster than shifted slices, whose gradients autograd adds up in full.
    """
    windows = F.pad(x, (0, 0, w, w)).unfold(2, 3 * w, w).permute(0, 2, 1, 4, 3)  # overlapping view
    blocks = windows.shape[1]
    parts = [windows] if glob is None else [glob[:, None].expand(-1, blocks, -1, -1, -1), windows]
    return torch.cat(parts, dim=3)


def _band_mask(is_masked, is_global, w: int) -> torch.Tensor:
    """Which of its 3w window keys each query may see: (B, blocks*w) -> (B, blocks, w, 3w).

    |i - j| <= w, and key j neither padding, nor past the ends, nor global (transformers takes
    global keys out of the band and adds them in front).  Padding queries (zeroed afterwards)
    see their own key, so that no row is empty.
    """
    batch, total = is_masked.shape
    blocks = total // w
    removed = F.pad(is_masked | is_global, (w, w), value=True).view(batch, blocks + 2, w)
    removed = torch.cat([removed[:, shift : shift + blocks] for shift in range(3)], dim=-1)  # (B, blocks, 3w)
    i = torch.arange(w, device=is_masked.device)[:, None]
    j = torch.arange(3 * w, device=is_masked.device)[None, :] - w  # key offset from the block start
    band = (j - i).abs() <= w  # (w, 3w), the same for every block
    own = (j == i) & is_masked.view(batch, blocks, w)[..., None]
    return (band & ~removed[:, :, None, :]) | own


def _global_slots(is_global):
    """Each row's global positions in order, as (B, G) ``order`` and ``valid``, G the largest count.

    Empty slots point at position 0 and are not valid.  Reading G is a host sync (and a
    graph break under torch.compile).
    """
    counts = is_global.sum(-1)
    slots = int(counts.max())
    order = torch.sort((~is_global).to(torch.int8), dim=-1, stable=True).indices[:, :slots]
    valid = torch.arange(slots, device=is_global.device)[None] < counts[:, None]
    return order, valid


_compiled_flex = None


def _flex_attention():
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


class _BlockMaskCache:
    """One block mask per forward pass, shared by the layers with the same window.

    transformers' encoder hands every layer the same padding / global tensors, so the
    mask is keyed by those objects (held weakly: a freed tensor can never match).
    """

    def __init__(self):
        self.key = None
        self.mask = None

    def get(self, is_masked, is_global, w, build):
        refs = self.key
        if refs and refs[0]() is is_masked and refs[1]() is is_global and refs[2] == w:
            return self.mask
        self.mask = build()
        self.key = (weakref.ref(is_masked), weakref.ref(is_global), w)
        return self.mask


_block_masks = _BlockMaskCache()


def _band_block_mask(removed, is_global, w: int, total: int):
    """flex_attention's block mask for the band: which key tiles each query tile needs.

    A tile pair is needed when some query-key pair in it is within ``w`` or the key tile holds
    a global token; it is *full* (no per-element mask needed) when every pair is within ``w``
    and no key in it is padding.  Element-level rules are in ``mask_mod``.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch = removed.shape[0]
    tiles = total // FLEX_BLOCK
    tile = torch.arange(tiles, device=removed.device)
    gap = (tile[:, None] - tile[None, :]).abs()
    near = (gap - 1).clamp(min=0) * FLEX_BLOCK + (gap > 0).long() <= w  # closest pair within w
    inside = (gap + 1) * FLEX_BLOCK - 1 <= w  # farthest pair within w
    has_global = is_global.view(batch, tiles, FLEX_BLOCK).any(-1)  # (B, tiles)
    has_removed = removed.view(batch, tiles, FLEX_BLOCK).any(-1)
    needed = near[None] | has_global[:, None, :]  # (B, q tiles, kv tiles)
    full = inside[None] & ~has_removed[:, None, :]
    partial = needed & ~full

    def indices(blocks):
        # kv tiles in use first; BlockMask reads the first ``count`` of each row
        order = torch.sort((~blocks).to(torch.int8), dim=-1, stable=True).indices
        return blocks.sum(-1).to(torch.int32)[:, None], order.to(torch.int32)[:, None]

    def mask_mod(b, h, q_idx, kv_idx):
        return ~removed[b, kv_idx] & (((q_idx - kv_idx).abs() <= w) | is_global[b, kv_idx])

    count, order = indices(partial)
    full_count, full_order = indices(full)
    return BlockMask.from_kv_blocks(count, order, full_count, full_order, BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod)


def flex_band_attention(attn, hidden, is_masked, is_global, has_global: bool) -> torch.Tensor:
    """The same function as :func:`band_attention`, computed by ``flex_attention``.

    Local queries see keys within ``w`` and every global key, padding never; the global
    rows are recomputed with the ``*_global`` projections as in the SDPA path.
    """
    batch, length, dim = hidden.shape
    w = attn.one_sided_attn_window_size
    heads = attn.num_heads
    q = _heads(attn.query(hidden), heads)
    k = _heads(attn.key(hidden), heads)
    v = _heads(attn.value(hidden), heads)
    pad = (-length) % FLEX_BLOCK
    total = length + pad

    def build():
        # padding keys are masked; global keys leave the band and join every row, once
        removed = F.pad(is_masked, (0, pad), value=True)
        glob = F.pad(is_global, (0, pad), value=False) & ~removed
        return _band_block_mask(removed, glob, w, total)

    block_mask = _block_masks.get(is_masked, is_global, w, build)
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    try:
        out = _flex_attention()(q, k, v, block_mask=block_mask)
    except Exception as error:  # inductor needs a working C++ (CPU) or Triton (CUDA) toolchain
        raise LongzooError(f"flex_attention could not run here ({type(error).__name__}); use backend 'sdpa'") from error
    out = out[:, :, :length].transpose(1, 2).reshape(batch, length, dim)
    out = out.masked_fill(is_masked[..., None], 0.0)
    if has_global:
        out = _global_rows(attn, hidden, out, is_masked, is_global, 0.0)
    return out


def _global_rows(attn, hidden, out, is_masked, is_global, dropout):
    """Global tokens attend to every non-padding token with the ``*_global`` projections.

    Returns ``out`` (B, L, D) with the global tokens' rows replaced, out of place (no writes
    into tensors autograd or torch.compile must track).
    """
    heads = attn.num_heads
    order, _ = _global_slots(is_global)
    batch, slots = order.shape
    dim = hidden.shape[-1]
    picked = torch.gather(hidden, 1, order[..., None].expand(-1, -1, dim))  # (B, G, D); empty slots unused
    qg = _heads(attn.query_global(picked), heads)  # (B, H, G, d)
    mask = (~is_masked)[:, None, None, :]  # padding keys are never attended
    if slots * heads < dim:
        glob = _few_global_queries(attn, hidden, qg, mask, dropout)
    else:
        kg = _heads(attn.key_global(hidden), heads)
        vg = _heads(attn.value_global(hidden), heads)
        glob = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, dropout_p=dropout)  # (B, H, G, d)
    glob = glob.transpose(1, 2).reshape(batch, slots, dim).to(out.dtype)
    rows, cols = is_global.nonzero(as_tuple=True)
    slot = is_global.cumsum(-1)[rows, cols] - 1  # each global token's slot in its row
    return out.index_put((rows, cols), glob[rows, slot])


def _few_global_queries(attn, hidden, qg, mask, dropout):
    """The global rows without projecting every token through ``key_global`` / ``value_global``.

    For a head with key weights W_k and bias b_k, ``q · (W_k h + b_k) = (W_kᵀ q) · h + q · b_k``;
    the bias term is the same for every key of a query, so softmax ignores it.  And
    ``Σ p_j (W_v h_j + b_v) = W_v (Σ p_j h_j) + b_v Σ p_j``.  With G global queries and H heads
    this costs O(G·H·L·D) instead of two O(L·D²) projections: less whenever G·H < D (one
    [CLS] in a 12-head, 768-wide layer: two of the five projections saved).
    """
    batch, heads, slots, head_dim = qg.shape
    dim = hidden.shape[-1]
    w_k = attn.key_global.weight.view(heads, head_dim, dim)
    w_v = attn.value_global.weight.view(heads, head_dim, dim)
    q_in = torch.einsum("bhgd,hde->bhge", qg, w_k) / head_dim**0.5  # queries moved to the input space
    # The key-bias term changes nothing after softmax, but it keeps key_global.bias in the
    # graph: its gradient stays a (zero) tensor, as in transformers, for optimizers and DDP.
    shift = torch.einsum("bhgd,hd->bhg", qg, attn.key_global.bias.view(heads, head_dim)) / head_dim**0.5
    scores = torch.einsum("bhge,ble->bhgl", q_in, hidden) + shift[..., None]
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = F.dropout(scores.softmax(-1, dtype=torch.float32).to(hidden.dtype), dropout, training=dropout > 0)
    context = torch.einsum("bhgl,ble->bhge", probs, hidden)  # weighted inputs, projected below
    bias = attn.value_global.bias.view(1, heads, 1, head_dim) * probs.sum(-1, keepdim=True)
    return torch.einsum("bhge,hde->bhgd", context, w_v) + bias


def _self_attention_modules(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LongformerSelfAttention)]


_FORWARDS = (LongformerSelfAttention.forward, FastLongformerSelfAttention.forward)


def _pinned_forwards(name, module) -> list[str]:
    """The instance attributes holding a bound forward, which a class swap alone does not reach.

    accelerate's hooks (``device_map``, ``cpu_offload``) replace ``module.forward`` by a wrapper
    that calls ``module._old_forward``, the bound original; removing the hook leaves that bound
    method as ``module.forward``.  Those are rebound on a swap.  Any other replacement would
    keep computing what it captured, silently, so it is refused.
    """
    pinned = []
    for attr in ("forward", "_old_forward"):
        value = module.__dict__.get(attr)
        if value is None:
            continue
        if isinstance(value, MethodType) and value.__self__ is module and value.__func__ in _FORWARDS:
            pinned.append(attr)
        elif not (attr == "forward" and hasattr(module, "_hf_hook") and "_old_forward" in module.__dict__):
            raise LongzooError(
                f"the forward of {name or type(module).__name__} was replaced by {value!r}, which would keep "
                "running whatever it wraps; switch the attention before wrapping the module"
            )
    return pinned


def _swap(model, cls, backend: str | None) -> None:
    """Give every Longformer self-attention of ``model`` class ``cls`` (``backend``: set, or removed if None)."""
    modules = _self_attention_modules(model)
    # every module is checked before any is changed: a refusal leaves the model as it was
    pinned = [(m, _pinned_forwards(name, m) if type(m) is not cls else []) for name, m in modules]
    for module, attrs in pinned:
        module.__class__ = cls
        for attr in attrs:
            module.__dict__[attr] = MethodType(cls.forward, module)
        if backend is None:
            module.__dict__.pop("_longzoo_backend", None)
        else:
            module._longzoo_backend = backend


def use_fast_attention(model, backend: str = "auto"):
    """Compute every Longformer self-attention of ``model`` with the fast path; returns ``model``.

    Parameters, names and the checkpoint format stay those of transformers.  ``backend``:
    ``"sdpa"`` (blocked band attention; CPU and GPU, training and inference), ``"flex"``
    (``flex_attention`` with a block mask; CUDA, or CPU without gradients; no attention
    dropout) or ``"auto"`` (flex where it is exact and faster — CUDA without attention
    dropout — SDPA otherwise), decided per call from the device and mode.  Modules under
    accelerate hooks (``device_map``, offloading) are switched too.
    """
    if backend not in BACKENDS:
        raise LongzooError(f"attention backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not _self_attention_modules(model):
        raise LongzooError(f"{type(model).__name__} has no Longformer self-attention to speed up")
    _swap(model, FastLongformerSelfAttention, backend)
    return model


def use_reference_attention(model):
    """Undo :func:`use_fast_attention`; returns ``model``."""
    _swap(model, LongformerSelfAttention, None)
    return model
