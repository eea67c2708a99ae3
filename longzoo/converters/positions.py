"""Building a long position table from a short one.

Longformer numbers real tokens ``pad_token_id + 1, pad_token_id + 2, ...`` (see
``create_position_ids_from_input_ids``), so position ``p`` of a document reads row
``new_offset + p`` of the new table, ``new_offset = pad + 1``.  The base reads row
``base_offset + p``: ``pad + 1`` for RoBERTa-style models, ``0`` for BERT.  Getting this
offset wrong shifts every position by one and is the most common bug in public
converters.
"""

from __future__ import annotations

import torch

from longzoo.choices import PositionInit

MODES = PositionInit.values()


def extend_positions(
    table: torch.Tensor,
    base_offset: int,
    base_length: int,
    new_offset: int,
    max_pos: int,
    mode: str = "copy",
) -> torch.Tensor:
    """Return a ``(new_offset + max_pos, hidden)`` table.

    ``copy`` tiles the ``base_length`` usable base rows (the Longformer recipe: position
    ``p`` gets base position ``p mod base_length``), so short inputs see exactly the base
    model's embeddings.  ``interpolate`` stretches them linearly over ``max_pos`` rows.
    """
    if mode not in MODES:
        raise ValueError(f"position init must be one of {MODES}, not {mode!r}")
    usable = table[base_offset : base_offset + base_length]
    new = table.new_zeros((new_offset + max_pos, table.shape[1]))
    # Rows below the offset are only read for padding tokens.  RoBERTa-style bases
    # already have such rows (same offset): keep them.  BERT has none, and its row 0
    # is real position 0, so the pad row stays zero as nn.Embedding(padding_idx) makes it.
    keep = min(base_offset, new_offset)
    new[:keep] = table[:keep]
    if mode == "copy":
        index = torch.arange(max_pos) % base_length
        new[new_offset:] = usable[index]
    else:
        stretched = torch.nn.functional.interpolate(
            usable.T.unsqueeze(0).float(), size=max_pos, mode="linear", align_corners=True
        )
        new[new_offset:] = stretched[0].T.to(table.dtype)
    return new
