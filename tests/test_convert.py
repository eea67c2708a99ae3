"""Conversion of every supported family: parity, key accounting, positions, outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import CASE_IDS, CASES, MAX_POS, WINDOW, case_by_id
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
    assert parity.passed
    assert parity.length == parity_length(WINDOW, 64) == 33
    assert parity.max_abs_diff <= TOLERANCE
    assert parity.max_abs_diff_global <= TOLERANCE
    assert parity.loads_cleanly and parity.tokenizer_ids_equal
    assert parity.full_length.tokens == parity.full_length.requested == MAX_POS and parity.full_length.finite


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
    manifest = read_manifest(result.out).convert.keys
    assert manifest.dropped == report.dropped and manifest.mapped == len(report.mapped)


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
    assert [h.step for h in manifest.history] == ["convert", "card"]
    record = manifest.convert
    assert record.base.source == "local" and len(record.base.sha256["model.safetensors"]) == 64
    assert record.options["max_pos"] == MAX_POS and record.parity.passed
    assert {"torch", "transformers", "longzoo"} <= set(record.versions)


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
    assert result.parity.passed and "copy table" in result.parity.positions
    table = load_file(result.out / "model.safetensors")["longformer.embeddings.position_embeddings.weight"]
    base = load_file(base_models["roberta-mlm"] / "model.safetensors")["roberta.embeddings.position_embeddings.weight"]
    assert torch.allclose(table[2], base[2]) and torch.allclose(table[-1], base[65], atol=1e-6)
    assert not torch.allclose(table[3], base[3])  # stretched, not tiled


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_output(base_models, tmp_path, dtype):
    result = convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "o", attention_window=WINDOW, dtype=dtype)
    assert result.parity.passed
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
    assert result.parity.passed
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
    assert convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW).parity.passed


def test_pickle_base_needs_allow_pickle(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(LongzooError, match="--allow-pickle"):
        convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW)
    assert not (tmp_path / "o").exists()
    result = convert(str(folder), MAX_POS, tmp_path / "o", attention_window=WINDOW, allow_pickle=True)
    assert result.parity.passed


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
    (out / "longzoo.json").write_text("{}")  # --force replaces only what longzoo wrote
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


# --- every output is sound: user-caused problems are one LongzooError line, nothing is written ---


def refused(base, tmp_path, match: str, **kwargs) -> str:
    """Convert ``base`` expecting a one-line LongzooError matching ``match``; return its message."""
    out = tmp_path / "o"
    kwargs.setdefault("attention_window", WINDOW)
    max_pos = kwargs.pop("max_pos", MAX_POS)
    with pytest.raises(LongzooError, match=match) as caught:
        convert(str(base), max_pos, out, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no staging folder left
    return message


def write_shards(folder, names: list[str]) -> None:
    """Split ``folder``'s weights over shards at ``names`` (relative or absolute) with an index."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    weight_map = {}
    for i, name in enumerate(names):
        part = {k: state[k].contiguous() for k in keys[i :: len(names)]}
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".bin"):
            torch.save(part, target)
        else:
            save_file(part, target, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("where", ["bin-shard", "parent", "absolute", "symlink"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_shard_index_names_only_safetensors_inside_the_base(base_copy, tmp_path, where, allow_pickle):
    folder = base_copy("bert-zh-mlm")
    elsewhere = tmp_path / "elsewhere"
    second = {
        "bin-shard": "model-00002.bin",
        "parent": "../elsewhere/model-00002.safetensors",
        "absolute": str(elsewhere / "model-00002.safetensors"),
        "symlink": "model-00002.safetensors",
    }[where]
    write_shards(folder, ["model-00001.safetensors", second])
    if where == "symlink":  # a shard inside the folder by name that resolves outside it
        elsewhere.mkdir()
        (folder / second).rename(elsewhere / "moved.safetensors")
        (folder / second).symlink_to(elsewhere / "moved.safetensors")
    message = refused(folder, tmp_path, match="model.safetensors.index.json", allow_pickle=allow_pickle)
    assert ("only .safetensors" if where == "bin-shard" else "outside the base folder") in message


@pytest.mark.parametrize(
    "index",
    [
        [1, 2],
        {"metadata": {}},
        {"weight_map": ["model-00001.safetensors"]},
        {"weight_map": "model-00001.safetensors"},
        {"weight_map": {"bert.embeddings.word_embeddings.weight": 1}},
        {"weight_map": {"bert.embeddings.word_embeddings.weight": ["model-00001.safetensors"]}},
        {"weight_map": {}},
    ],
    ids=["list", "no-map", "map-list", "map-str", "shard-int", "shard-list", "empty"],
)
def test_malformed_shard_index_is_one_line(base_copy, tmp_path, index):
    folder = base_copy("bert-zh-mlm")
    write_shards(folder, ["model-00001.safetensors", "model-00002.safetensors"])
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(folder, tmp_path, match="model.safetensors.index.json.*weight_map")


def test_sharded_hub_snapshot_still_converts(base_models, tmp_path, loopback_only):
    """Hub snapshots are symlinks into the cache's blobs: shards there are not 'outside'."""
    from hub_stub import HubStub
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    repo = tmp_path / "repo"
    AutoModelForMaskedLM.from_pretrained(base_models["bert-zh-mlm"]).save_pretrained(repo, max_shard_size="20KB")
    AutoTokenizer.from_pretrained(base_models["bert-zh-mlm"]).save_pretrained(repo)
    with HubStub({"someone/sharded": repo}) as hub:
        loopback_only(hub.url)
        result = convert("someone/sharded", MAX_POS, tmp_path / "o", attention_window=WINDOW)
    snapshot = next((tmp_path / "cache").glob("models--someone--sharded/snapshots/*"))
    assert (snapshot / "model.safetensors.index.json").is_file()
    assert all(p.is_symlink() for p in snapshot.glob("model-*.safetensors"))
    assert result.parity.passed and result.manifest.convert.base.source == "hub"


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json")


@pytest.mark.parametrize("case_id", ["bert-zh-mlm", "roberta-mlm", "xlm-roberta-mlm"])
@pytest.mark.parametrize("keep_config", [False, True])
def test_base_without_tokenizer_files_is_refused(base_copy, tmp_path, case_id, keep_config):
    """transformers would build a specials-only tokenizer that maps every word to unk."""
    folder = base_copy(case_id)
    for name in TOKENIZER_FILES:
        if not (keep_config and name == "tokenizer_config.json"):
            (folder / name).unlink(missing_ok=True)
    message = refused(folder, tmp_path, match="no tokenizer")
    assert str(folder) in message and "copy the tokenizer files" in message


@pytest.mark.parametrize(
    "content",
    ['{"version": "1.0", "trunc', "[1, 2]", '{"model": {"type": "Nope"}}'],
    ids=["truncated", "not-an-object", "wrong-model"],
)
@pytest.mark.parametrize("case_id", ["bert-zh-mlm", "roberta-mlm"])
def test_broken_tokenizer_json_names_the_file(base_copy, tmp_path, case_id, content):
    folder = base_copy(case_id)
    (folder / "tokenizer.json").write_text(content)
    refused(folder, tmp_path, match=f"{folder / 'tokenizer.json'}: ")


def test_broken_tokenizer_config_names_the_file(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": 5')
    refused(folder, tmp_path, match=f"{folder / 'tokenizer_config.json'}: ")


@pytest.mark.parametrize("verify", [True, False])
def test_tokenizer_ids_must_fit_the_vocabulary(base_copy, tmp_path, verify):
    """Added tokens past vocab_size have no embedding row; the sample text never hits them."""
    from transformers import AutoTokenizer

    folder = base_copy("bert-zh-mlm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["新词甲", "新词乙"])
    tokenizer.save_pretrained(folder)
    message = refused(folder, tmp_path, match="vocab_size", verify=verify)
    assert "305" in message and "304" in message  # the largest id, and the vocabulary size


DELETE = "<deleted>"
BAD_CONFIGS = [
    # (case, {key: new value or DELETE}, fragment of the message)
    ("bert-zh-mlm", {"model_type": ["bert"]}, "model_type"),
    ("bert-zh-mlm", {"model_type": DELETE}, "model_type"),
    ("bert-zh-mlm", {"num_attention_heads": 5}, "num_attention_heads 5 does not divide hidden_size 32"),
    ("bert-zh-mlm", {"num_attention_heads": 0}, "num_attention_heads"),
    ("bert-zh-mlm", {"hidden_size": "32"}, "hidden_size"),
    ("bert-zh-mlm", {"hidden_size": -32}, "hidden_size"),
    ("bert-zh-mlm", {"hidden_size": 32.0}, "hidden_size"),
    ("bert-zh-mlm", {"num_hidden_layers": 0}, "num_hidden_layers"),
    ("bert-zh-mlm", {"intermediate_size": "64"}, "intermediate_size"),
    ("bert-zh-mlm", {"vocab_size": 0}, "vocab_size"),
    ("bert-zh-mlm", {"max_position_embeddings": -5}, "max_position_embeddings"),
    ("bert-zh-mlm", {"max_position_embeddings": 0}, "max_position_embeddings"),
    ("bert-zh-mlm", {"max_position_embeddings": True}, "max_position_embeddings"),
    ("bert-zh-mlm", {"max_position_embeddings": "64"}, "max_position_embeddings"),
    ("bert-zh-mlm", {"max_position_embeddings": 128}, "max_position_embeddings 128.*64 rows"),
    ("roberta-mlm", {"max_position_embeddings": 2}, "max_position_embeddings"),
    ("roberta-mlm", {"max_position_embeddings": 10**12}, "max_position_embeddings"),
    ("bert-zh-mlm", {"pad_token_id": 10000}, "pad_token_id 10000 is not an id in the vocabulary"),
    ("bert-zh-mlm", {"pad_token_id": -1}, "pad_token_id -1"),
    ("roberta-mlm", {"pad_token_id": "1"}, "pad_token_id"),
    ("roberta-mlm", {"hidden_act": "bogus"}, "hidden_act 'bogus'"),
    ("bert-zh-mlm", {"layer_norm_eps": "x"}, "layer_norm_eps"),
    ("bert-zh-mlm", {"position_embedding_type": ["absolute"]}, "position_embedding_type"),
    ("bert-zh-mlm", {"attention_window": {"a": 1}}, "attention_window"),
    ("bert-zh-mlm", {"attention_window": True}, "attention_window"),
    ("bert-zh-mlm", {"attention_window": 0}, "attention_window"),
]


@pytest.mark.parametrize(
    "case_id, changes, fragment", BAD_CONFIGS, ids=[f"{c}-{k}={v!r}" for c, e, _ in BAD_CONFIGS for k, v in e.items()]
)
def test_malformed_config_is_one_line_naming_the_file(base_copy, tmp_path, case_id, changes, fragment):
    folder = base_copy(case_id)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is DELETE:
            config.pop(key)
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    message = refused(folder, tmp_path, match=fragment)
    assert message.startswith(f"{path}: "), message


@pytest.mark.parametrize(
    "max_pos, window, fragment",
    [
        (256.0, WINDOW, "--max-pos"),
        (float("nan"), WINDOW, "--max-pos"),
        (float("inf"), WINDOW, "--max-pos"),
        ("256", WINDOW, "--max-pos"),
        (True, None, "--max-pos"),
        (10**12, WINDOW, "--max-pos.*1,048,576"),
        (MAX_POS, 2, "--attention-window.*at least 4"),
        (MAX_POS, 64.0, "--attention-window"),
        (MAX_POS, "64", "--attention-window"),
    ],
)
def test_numbers_are_checked_at_the_boundary(base_models, tmp_path, max_pos, window, fragment):
    refused(base_models["bert-zh-mlm"], tmp_path, match=fragment, max_pos=max_pos, attention_window=window)


def test_force_never_deletes_the_base(base_models, tmp_path):
    """An earlier output that holds the base is still not replaced by --force."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "longzoo.json").write_text("{}")
    base = out / "base"
    shutil.copytree(base_models["bert-encoder"], base)
    with pytest.raises(LongzooError, match="input"):
        convert(str(base), MAX_POS, out, attention_window=WINDOW, force=True)
    assert (base / "model.safetensors").is_file()


def test_odd_max_pos_gets_an_even_default_window(base_models, tmp_path):
    """The default window is min(512, --max-pos), rounded down to the even size windows need."""
    result = convert(str(base_models["bert-encoder"]), 101, tmp_path / "o")
    assert result.manifest.convert.attention_window == 100 and result.parity.passed


def test_max_pos_bound_is_checked_before_anything_is_read():
    from longzoo.converters.generic import MAX_POSITIONS, ConvertOptions

    assert MAX_POSITIONS == 1 << 20
    ConvertOptions(MAX_POSITIONS, WINDOW).validate()
    with pytest.raises(LongzooError, match="1,048,576"):
        ConvertOptions(MAX_POSITIONS + 1, WINDOW).validate()


def test_position_table_larger_than_memory_is_refused(base_models, tmp_path, monkeypatch):
    from longzoo.converters import generic

    monkeypatch.setattr(generic, "_physical_memory", lambda: 1 << 20)  # 1 MiB "machine"
    refused(base_models["bert-zh-mlm"], tmp_path, match="GiB.*memory", max_pos=16384)


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_base_weights_are_never_written(base_copy, tmp_path, verify, bad):
    folder = base_copy("bert-zh-mlm")
    state = load_file(folder / "model.safetensors")
    state["bert.encoder.layer.1.output.dense.weight"][3, 5] = float(bad)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    message = refused(folder, tmp_path, match="bert.encoder.layer.1.output.dense.weight", verify=verify)
    assert str(folder / "model.safetensors") in message and "NaN or infinite" in message


def test_half_precision_overflow_is_never_written(base_copy, tmp_path):
    folder = base_copy("bert-zh-mlm")
    state = load_file(folder / "model.safetensors")
    state["bert.encoder.layer.0.output.dense.weight"][0, 0] = 1e6  # float16 tops out at 65504
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    message = refused(folder, tmp_path, match="float16", dtype="float16", verify=False)
    assert "longformer.encoder.layer.0.output.dense.weight" in message and "bfloat16" in message


@pytest.fixture
def loopback_only(monkeypatch, tmp_path):
    """Hub settings as a user's shell would give them, with any non-loopback connection an error."""
    import socket

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        assert host in ("127.0.0.1", "localhost", "::1"), f"test tried to reach {host}"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def use(endpoint: str) -> None:
        # huggingface_hub reads HF_ENDPOINT once, at import, into these two constants.
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)

    return use


@pytest.mark.parametrize(
    "endpoint", ["not-a-url", "ftp://127.0.0.1:9", "http://", "http://127.0.0.1:notaport", "http://127.0.0.1:9"]
)
def test_bad_hf_endpoint_is_one_line(loopback_only, tmp_path, endpoint):
    loopback_only(endpoint)
    message = refused("someone/not-cached", tmp_path, match="HF_ENDPOINT")
    assert endpoint in message


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://127.0.0.1:notaport"])
def test_endpoint_that_breaks_imports_is_one_line(base_models, tmp_path, endpoint):
    """huggingface_hub parses HF_ENDPOINT on import, so only a fresh process shows this."""
    code = (
        "import sys\n"
        "from longzoo.converters import convert\n"
        "from longzoo.errors import LongzooError\n"
        "try:\n"
        "    convert(sys.argv[1], int(sys.argv[2]), sys.argv[3], attention_window=int(sys.argv[4]))\n"
        "except LongzooError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    out = tmp_path / "o"
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")}
    args = [str(base_models["bert-zh-mlm"]), str(MAX_POS), str(out), str(WINDOW)]
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.count("\n") == 1 and "HF_ENDPOINT" in proc.stdout and endpoint in proc.stdout
    assert not out.exists()
