"""Conversion of every supported family: parity, key accounting, positions, outputs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CASE_IDS, CASES, MAX_POS, WINDOW, case_by_id
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from longzoo.converters import ADAPTERS, convert
from longzoo.converters.parity import TOLERANCE, parity_length
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest


def test_every_adapter_has_a_case():
    assert {c.model_type for c in CASES} == set(ADAPTERS)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_parity_with_and_without_global_attention(converted, case_id):
    parity = converted[case_id].parity
    assert parity["passed"]
    assert parity["length"] == parity_length(WINDOW, 64) == 33
    assert parity["max_abs_diff"] <= TOLERANCE
    assert parity["max_abs_diff_global"] <= TOLERANCE
    assert parity["loads_cleanly"] and parity["tokenizer_ids_equal"]
    assert parity["full_length"] == {**parity["full_length"], "tokens": MAX_POS, "finite": True}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_key_accounting_is_complete(base_models, converted, case_id):
    result = converted[case_id]
    source = load_file(base_models[case_id] / "model.safetensors")
    report = result.report
    # every source key is mapped or dropped with a reason, never both, never neither
    assert set(report.mapped) | set(report.dropped) == set(source)
    assert not set(report.mapped) & set(report.dropped)
    # every target key is filled exactly once: from the base, generated, or tied
    with safe_open(result.out / "model.safetensors", "pt") as fh:
        saved = set(fh.keys())
    filled = set(report.mapped.values()) | set(report.generated)
    assert filled == saved
    # only the position table is both read from the base and rebuilt from it
    overlap = set(report.mapped.values()) & set(report.generated)
    assert [k.endswith("embeddings.position_embeddings.weight") for k in overlap] == [True]
    expected_drops = {
        "bert-zh-pretraining": {
            "bert.pooler.dense.weight",
            "bert.pooler.dense.bias",
            "cls.seq_relationship.weight",
            "cls.seq_relationship.bias",
        }
    }.get(case_id, set())
    assert set(report.dropped) == expected_drops
    manifest = read_manifest(result.out)["convert"]["keys"]
    assert manifest["dropped"] == report.dropped and manifest["mapped"] == len(report.mapped)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_positions_are_copied_from_the_right_rows(base_models, converted, case_id):
    case = case_by_id(case_id)
    base = load_file(base_models[case_id] / "model.safetensors")
    old = next(v for k, v in base.items() if k.endswith("position_embeddings.weight"))
    new = next(
        v
        for k, v in load_file(converted[case_id].out / "model.safetensors").items()
        if k.endswith("position_embeddings.weight")
    )
    if case.model_type == "bert":  # BERT: position 0 is row 0; Longformer: row pad+1 = 1
        assert new.shape[0] == MAX_POS + 1
        assert torch.equal(new[0], torch.zeros_like(new[0]))
        usable = old[0:64]
        tiled = new[1:]
    else:  # RoBERTa family: rows 0-1 kept, real positions start at row 2 in both tables
        assert new.shape[0] == MAX_POS + 2
        assert torch.equal(new[:2], old[:2])
        usable = old[2:66]
        tiled = new[2:]
    assert torch.equal(tiled, usable.repeat(MAX_POS // 64, 1))


@pytest.mark.parametrize("case_id", ["bert-zh-mlm", "roberta-mlm"])
def test_global_projections_are_independent_copies(converted, case_id):
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(converted[case_id].out)
    attn = model.longformer.encoder.layer[0].attention.self
    for name in ("query", "key", "value"):
        local, glob = getattr(attn, name), getattr(attn, f"{name}_global")
        assert torch.equal(local.weight, glob.weight) and torch.equal(local.bias, glob.bias)
        assert local.weight.data_ptr() != glob.weight.data_ptr()
    with torch.no_grad():
        attn.query.weight.add_(1.0)
    assert not torch.equal(attn.query.weight, attn.query_global.weight)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_output_folder_is_stock_longformer(converted, case_id):
    out = converted[case_id].out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "longformer" and "auto_map" not in config
    assert config["max_position_embeddings"] == MAX_POS + config["pad_token_id"] + 1
    assert config["attention_window"] == [WINDOW] * config["num_hidden_layers"]
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["model_max_length"] == MAX_POS
    assert "is_local" not in tok and "name_or_path" not in tok
    if case_by_id(case_id).model_type == "bert":
        assert tok["tokenizer_class"].startswith("BertTokenizer")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "longzoo.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    manifest = read_manifest(out)
    assert [h["step"] for h in manifest["history"]] == ["convert", "card"]
    record = manifest["convert"]
    assert record["base"]["source"] == "local" and len(record["base"]["sha256"]["model.safetensors"]) == 64
    assert record["options"]["max_pos"] == MAX_POS and record["parity"]["passed"]
    assert {"torch", "transformers", "longzoo"} <= set(record["versions"])


def test_config_carries_family_specific_values(converted):
    bert = json.loads((converted["bert-zh-mlm"].out / "config.json").read_text())
    roberta = json.loads((converted["roberta-mlm"].out / "config.json").read_text())
    assert (bert["layer_norm_eps"], bert["type_vocab_size"], bert["pad_token_id"]) == (1e-12, 2, 0)
    assert (roberta["layer_norm_eps"], roberta["type_vocab_size"], roberta["pad_token_id"]) == (1e-5, 1, 1)
    assert (bert["bos_token_id"], bert["eos_token_id"]) == (2, 3)  # [CLS], [SEP] of the fixture vocab
    distil = json.loads((converted["distilroberta-mlm"].out / "config.json").read_text())
    assert distil["num_hidden_layers"] == 3


def test_off_by_one_positions_fail_the_parity_check(base_models, tmp_path, monkeypatch):
    """The check is sensitive: the classic BERT bug (copying from row 0) is caught."""
    from longzoo.converters import generic as convert_module

    real = convert_module.extend_positions

    def naive(table, base_offset, base_length, new_offset, max_pos, mode):
        # same table size, but base row 0 lands on row 0 instead of row pad+1
        return real(table, base_offset, base_length, 0, max_pos + new_offset, mode)

    monkeypatch.setattr(convert_module, "extend_positions", naive)
    out = tmp_path / "out"
    with pytest.raises(LongzooError, match="parity check failed"):
        convert(str(base_models["bert-zh-mlm"]), MAX_POS, out, attention_window=WINDOW)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interpolate_keeps_everything_but_positions(base_models, tmp_path):
    result = convert(
        str(base_models["roberta-mlm"]), MAX_POS, tmp_path / "o", attention_window=WINDOW, position_init="interpolate"
    )
    assert result.parity["passed"] and "copy table" in result.parity["positions"]
    table = load_file(result.out / "model.safetensors")["longformer.embeddings.position_embeddings.weight"]
    base = load_file(base_models["roberta-mlm"] / "model.safetensors")["roberta.embeddings.position_embeddings.weight"]
    assert torch.allclose(table[2], base[2]) and torch.allclose(table[-1], base[65], atol=1e-6)
    assert not torch.allclose(table[3], base[3])  # stretched, not tiled


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_output(base_models, tmp_path, dtype):
    result = convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "o", attention_window=WINDOW, dtype=dtype)
    assert result.parity["passed"]
    with safe_open(result.out / "model.safetensors", "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {f"torch.{dtype}"}


def test_checkpoint_with_explicit_tied_decoder(base_copy, tmp_path):
    """Older checkpoints store the decoder weight and bias that modern ones tie away."""
    folder = base_copy("roberta-mlm")
    state = load_file(folder / "model.safetensors")
    state["lm_head.decoder.weight"] = state["roberta.embeddings.word_embeddings.weight"].clone()
    state["lm_head.decoder.bias"] = state["lm_head.bias"].clone()
    state["roberta.embeddings.position_ids"] = torch.arange(66)[None]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    result = convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)
    assert result.parity["passed"]
    dropped = result.report.dropped
    assert dropped["lm_head.decoder.weight"].startswith("tied")
    assert dropped["lm_head.decoder.bias"].startswith("tied")
    assert dropped["roberta.embeddings.position_ids"].startswith("buffer")


def test_sharded_checkpoint(base_models, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = tmp_path / "sharded"
    AutoModelForMaskedLM.from_pretrained(base_models["bert-zh-mlm"]).save_pretrained(folder, max_shard_size="20KB")
    AutoTokenizer.from_pretrained(base_models["bert-zh-mlm"]).save_pretrained(folder)
    assert (folder / "model.safetensors.index.json").exists()
    assert convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW).parity["passed"]


def test_pickle_base_needs_allow_pickle(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(LongzooError, match="--allow-pickle"):
        convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)
    assert not (tmp_path / "o").exists()
    result = convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW, allow_pickle=True)
    assert result.parity["passed"]


def test_unknown_source_key_is_an_error(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    state = load_file(folder / "model.safetensors")
    state["bert.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(LongzooError, match="rotary"):
        convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)


def test_missing_source_key_is_an_error(base_copy, tmp_path):
    folder = base_copy("roberta-mlm")
    state = load_file(folder / "model.safetensors")
    del state["roberta.encoder.layer.1.output.dense.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(LongzooError, match="lacks weights for: longformer.encoder.layer.1.output.dense.weight"):
        convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)
    assert not (tmp_path / "o").exists()


def test_wrong_shape_is_an_error(base_copy, tmp_path):
    folder = base_copy("roberta-mlm")
    state = load_file(folder / "model.safetensors")
    state["roberta.encoder.layer.0.intermediate.dense.bias"] = torch.zeros(7)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(LongzooError, match=r"shape \(7,\)"):
        convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)


def test_force_replaces_an_existing_output(base_models, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    convert(str(base_models["bert-encoder"]), MAX_POS, out, attention_window=WINDOW, force=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no staging or retired folder left


def test_legacy_gamma_beta_names(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    state = load_file(folder / "model.safetensors")
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    save_file(renamed, folder / "model.safetensors")
    # transformers itself no longer renames gamma/beta on load, so compare with --no-verify
    result = convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW, verify=False)
    saved = load_file(result.out / "model.safetensors")
    assert torch.equal(saved["longformer.embeddings.LayerNorm.weight"], state["bert.embeddings.LayerNorm.weight"])
