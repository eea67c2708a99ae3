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
checkpoint format) and only replaces ``forward``; ``use_reference_attention`` swaps back.
Calls that ask for ``output_attentions`` use the reference computation.
"""

from __future__ import annotations

import weakref

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
    total = length + pad
    blocks = total // w

    # Keys of block t: blocks t-1, t, t+1 (zero blocks beyond the ends, masked below).
    def windows(t):
        padded = F.pad(t, (0, 0, w, w))  # (B, H, total + 2w, d)
        return padded.unfold(2, 3 * w, w).transpose(-1, -2)  # (B, H, blocks, 3w, d)

    k_win, v_win = windows(k), windows(v)
    # Which keys each query may see: |i - j| <= w, j inside the sequence, j neither padding
    # nor global (transformers takes global keys out of the band and adds them in front).
    i = torch.arange(w, device=hidden.device)[:, None]
    j = torch.arange(3 * w, device=hidden.device)[None, :] - w
    band = (j - i).abs() <= w  # (w, 3w), the same for every block
    key_pos = torch.arange(blocks, device=hidden.device)[:, None] * w + torch.arange(-w, 2 * w, device=hidden.device)
    inside = (key_pos >= 0) & (key_pos < total)  # (blocks, 3w)
    removed = is_masked | is_global  # (B, total)
    removed_win = F.pad(removed, (w, w), value=True).unfold(1, 3 * w, w)  # (B, blocks, 3w)
    allowed = band[None, None] & (inside[None] & ~removed_win)[:, :, None, :]  # (B, blocks, w, 3w)

    q_blocks = q.reshape(batch, heads, blocks, w, -1)
    if has_global:
        counts = is_global.sum(-1)
        slots = int(counts.max())
        # positions of each row's global tokens, in order; empty slots point at 0 and are masked
        order = torch.sort((~is_global).to(torch.int8), dim=-1, stable=True).indices[:, :slots]
        valid = torch.arange(slots, device=hidden.device)[None] < counts[:, None]  # (B, G)
        gather = order[:, None, :, None].expand(batch, heads, slots, k.shape[-1])
        k_glob = torch.gather(k, 2, gather)[:, :, None].expand(-1, -1, blocks, -1, -1)
        v_glob = torch.gather(v, 2, gather)[:, :, None].expand(-1, -1, blocks, -1, -1)
        k_win = torch.cat([k_glob, k_win], dim=-2)
        v_win = torch.cat([v_glob, v_win], dim=-2)
        allowed = torch.cat([valid[:, None, None, :].expand(-1, blocks, w, -1), allowed], dim=-1)
    # Padding queries are zeroed afterwards; let them see something so no row is empty.
    query_masked = is_masked.view(batch, blocks, w)
    offset = k_win.shape[-2] - 3 * w
    diagonal = torch.zeros_like(allowed)
    diagonal[..., torch.arange(w), offset + w + torch.arange(w)] = True
    allowed = allowed | (diagonal & query_masked[..., None])

    out = F.scaled_dot_product_attention(
        q_blocks.transpose(1, 2).reshape(batch * blocks, heads, w, -1),
        k_win.transpose(1, 2).reshape(batch * blocks, heads, k_win.shape[-2], -1),
        v_win.transpose(1, 2).reshape(batch * blocks, heads, v_win.shape[-2], -1),
        attn_mask=allowed.reshape(batch * blocks, 1, w, -1),
        dropout_p=dropout,
    )  # (B*blocks, H, w, d)
    out = out.view(batch, blocks, heads, w, -1).permute(0, 1, 3, 2, 4).reshape(batch, total, dim)
    out = out.masked_fill(is_masked[..., None], 0.0)

    if has_global:
        out = _global_rows(attn, hidden, out, is_masked[:, :length], is_global[:, :length], dropout)
    return out[:, :length]


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
    """Global tokens attend to every non-padding token with the ``*_global`` projections."""
    heads = attn.num_heads
    rows, cols = is_global.nonzero(as_tuple=True)
    counts = is_global.sum(-1)
    slots = int(counts.max())
    batch, _, dim = hidden.shape
    slot = torch.arange(slots, device=hidden.device)[None] < counts[:, None]
    picked = hidden.new_zeros(batch, slots, dim)
    picked[slot] = hidden[rows, cols]
    qg = _heads(attn.query_global(picked), heads)  # (B, H, G, d)
    mask = (~is_masked)[:, None, None, :]  # padding keys are never attended
    if slots * heads < dim:
        glob = _few_global_queries(attn, hidden, qg, mask, dropout)
    else:
        kg = _heads(attn.key_global(hidden), heads)
        vg = _heads(attn.value_global(hidden), heads)
        glob = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask, dropout_p=dropout)  # (B, H, G, d)
    glob = glob.transpose(1, 2).reshape(batch, slots, -1)
    out = out.clone()
    out[rows, cols] = glob[slot].to(out.dtype)
    return out


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
    return [m for m in model.modules() if isinstance(m, LongformerSelfAttention)]


def use_fast_attention(model, backend: str = "auto"):
    """Compute every Longformer self-attention of ``model`` with the fast path; returns ``model``.

    Parameters, names and the checkpoint format stay those of transformers.  ``backend``:
    ``"sdpa"`` (blocked band attention; CPU and GPU, training and inference), ``"flex"``
    (``flex_attention`` with a block mask; CUDA, or CPU without gradients; no attention
    dropout) or ``"auto"`` (flex where it is exact and faster — CUDA without attention
    dropout — SDPA otherwise), decided per call from the device and mode.
    """
    if backend not in BACKENDS:
        raise LongzooError(f"attention backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    modules = _self_attention_modules(model)
    if not modules:
        raise LongzooError(f"{type(model).__name__} has no Longformer self-attention to speed up")
    for module in modules:
        module.__class__ = FastLongformerSelfAttention
        module._longzoo_backend = backend
    return model


def use_reference_attention(model):
    """Undo :func:`use_fast_attention`; returns ``model``."""
    for module in _self_attention_modules(model):
        module.__class__ = LongformerSelfAttention
        module.__dict__.pop("_longzoo_backend", None)
    return model
