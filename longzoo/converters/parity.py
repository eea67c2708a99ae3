"""Proof that a conversion is right: converted and base model agree on real text.

A Longformer equals its base exactly only where every token sees every other token:
``2 * (L - 1) <= attention_window`` (transformers counts the window over both sides).
The check runs at that length, with and without global attention on the first token.
A full-attention model equals its base at every length the base can read; it is checked
at up to :data:`FULL_PARITY_LENGTH` tokens, with transformers' SDPA attention.  Either
form then runs once at its full length.
"""

from __future__ import annotations

import time
from pathlib import Path

from longzoo.converters.adapters import FULL_ATTENTION_IMPLEMENTATION
from longzoo.converters.positions import extend_positions
from longzoo.converters.sample_text import TEXTS
from longzoo.progress import Steps
from longzoo.quiet import quiet_transformers
from longzoo.records import FullLengthRun, ParityReport

TOLERANCE = 1e-4
# Any length the base reads proves a full-attention model; longer only costs time.
FULL_PARITY_LENGTH = 512


def parity_length(window: int, base_length: int) -> int:
    """Longest input on which the converted model must equal the base model."""
    return min(window // 2 + 1, base_length)


def _batch(tokenizer, length: int):
    """Two real documents, the second shorter so padding and the attention mask count."""
    rows = [
        tokenizer(TEXTS[0] * 3, max_length=length, truncation=True),
        tokenizer(TEXTS[1] * 3, max_length=max(3, (2 * length) // 3), truncation=True),
    ]
    return tokenizer.pad(rows, return_tensors="pt")


def _long_input(tokenizer, length: int):
    text = " ".join(TEXTS)
    ids = tokenizer(text * (1 + length // 64), max_length=length, truncation=True, return_tensors="pt")
    return ids


def _outputs(model, mlm: bool, **inputs):
    out = model(**inputs)
    return out.logits if mlm else out.last_hidden_state


def verify_conversion(
    base_dir: Path, out_dir: Path, target, layout, options, steps: Steps | None = None, check_global: bool = True
) -> ParityReport:
    """Compare the saved conversion in ``out_dir`` with the base model in ``base_dir``.

    Both run in float32; for a float16/bfloat16 output the base weights are rounded
    through the same dtype first, so the number measures the conversion, not the
    rounding.  ``check_global=False`` (a long base that brings its own trained global
    projections) skips the global-attention comparison, which a plain BERT/RoBERTa
    cannot provide; full attention has no global tokens to compare.  ``target`` is the
    :class:`~longzoo.converters.adapters.Target` the output was written as.  Returns the
    record stored as ``convert.parity`` in the manifest.
    """
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    steps = steps or Steps()
    mlm = target.architecture.endswith("ForMaskedLM")
    auto = AutoModelForMaskedLM if mlm else AutoModel
    if target.windowed:
        length, implementation = parity_length(options.attention_window, layout.base_length), {}
    else:  # proven with the attention users will run it with
        length, implementation = (
            min(FULL_PARITY_LENGTH, layout.base_length),
            {"attn_implementation": FULL_ATTENTION_IMPLEMENTATION},
        )
    with steps.step(f"Verifying parity at {length} tokens"), quiet_transformers(), torch.inference_mode():
        base = auto.from_pretrained(base_dir, dtype=torch.float32).eval()
        if options.dtype != "float32":
            base = base.to(getattr(torch, options.dtype)).float()
        converted, info = auto.from_pretrained(out_dir, dtype=torch.float32, output_loading_info=True, **implementation)
        converted.eval()
        fields, out_tok, batch = _tokenizers(base_dir, out_dir, length)
        fields["attn_implementation"] = converted.config._attn_implementation
        if options.position_init != "copy":
            fields["positions"] = _substitute_copy_table(converted, base, layout, options.max_pos)
        fields.update(_differences(base, converted, mlm, batch, check_global and target.windowed))
        if not target.windowed:
            fields["global_check"] = "not applicable: full attention has no global tokens"
        del base
    with (
        steps.step(f"Running the converted model at {options.max_pos} tokens"),
        quiet_transformers(),
        torch.inference_mode(),
    ):
        full_length = _full_length_run(converted, out_tok, options.max_pos, target.windowed)
    return ParityReport(
        tolerance=TOLERANCE,
        length=length,
        compared="logits" if mlm else "last_hidden_state",
        loading={k: sorted(map(str, v)) for k, v in info.items() if k != "error_msgs"},
        full_length=full_length,
        **fields,
    )


def _tokenizers(base_dir: Path, out_dir: Path, length: int):
    """The converted tokenizer must give the base's ids: its report fields, the tokenizer, the test batch."""
    import torch
    from transformers import AutoTokenizer

    base_tok = AutoTokenizer.from_pretrained(base_dir)
    out_tok = AutoTokenizer.from_pretrained(out_dir)
    batch = _batch(base_tok, length)
    return (
        {
            "tokenizer_ids_equal": bool(torch.equal(batch["input_ids"], _batch(out_tok, length)["input_ids"])),
            "tokenizer_class": type(out_tok).__name__,
            "tokenizer_model_max_length": out_tok.model_max_length,
        },
        out_tok,
        batch,
    )


def _differences(base, converted, mlm: bool, batch, check_global: bool) -> dict:
    """Largest output difference on real tokens, without and with global attention on token 0."""
    import torch

    mask = batch["attention_mask"].bool()
    expected = _outputs(base, mlm, **batch)[mask]
    got = _outputs(converted, mlm, **batch)[mask]
    found = {"max_abs_diff": float((got - expected).abs().max()), "max_abs_diff_global": None}
    if not check_global:
        found["global_check"] = "skipped: the base's trained global projections have no counterpart in it"
        return found
    global_mask = torch.zeros_like(batch["input_ids"])
    global_mask[:, 0] = 1
    got_global = _outputs(converted, mlm, **batch, global_attention_mask=global_mask)[mask]
    found["max_abs_diff_global"] = float((got_global - expected).abs().max())
    return found


def _full_length_run(converted, tokenizer, max_pos: int, windowed: bool) -> FullLengthRun:
    import torch

    long = dict(_long_input(tokenizer, max_pos))
    if windowed:
        long["global_attention_mask"] = torch.zeros_like(long["input_ids"])
        long["global_attention_mask"][:, 0] = 1
    start = time.perf_counter()
    hidden = converted.base_model(**long).last_hidden_state
    return FullLengthRun(
        tokens=int(long["input_ids"].shape[1]),
        requested=max_pos,
        seconds=round(time.perf_counter() - start, 3),
        finite=bool(torch.isfinite(hidden).all()),
    )


def _substitute_copy_table(converted, base, layout, max_pos: int) -> str:
    """For ``interpolate``: check everything but the positions against the base.

    Interpolated positions change short-input outputs by design, so the parity check
    swaps in the copy-initialised table (in memory only) to prove the rest is exact.
    """
    table = base.base_model.embeddings.position_embeddings.weight
    copied = extend_positions(table, layout.base_offset, layout.base_length, layout.new_offset, max_pos, "copy")
    converted.base_model.embeddings.position_embeddings.weight.copy_(copied)
    return "interpolated table replaced by the copy table for this check; all other weights compared as saved"
