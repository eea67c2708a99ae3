"""Model cards: metadata, licence inheritance, language, and snapshot renderings."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import MAX_POS, WINDOW
from huggingface_hub import metadata_load
from typer.testing import CliRunner

from longzoo.cards import render_card, validate_metadata
from longzoo.cli import app
from longzoo.converters import convert
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest, write_manifest
from longzoo.records import Manifest

SNAPSHOTS = Path(__file__).parent / "snapshots"
VERSIONS = {"longzoo": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0", "python": "3.11.7"}


def model_folder(converted, case_id: str, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(converted[case_id].out, folder)
    return folder


def pin_manifest(folder: Path, base: dict, **sections) -> None:
    """Replace run-dependent values so that renderings compare byte for byte."""
    manifest = read_manifest(folder).model_dump()
    manifest.pop("card", None)
    convert_record = manifest["convert"]
    convert_record["versions"] = VERSIONS
    convert_record["base"].update(base)
    convert_record["parity"].update(max_abs_diff=2.5e-06, max_abs_diff_global=3.1e-06)
    manifest.update(sections)
    write_manifest(folder, Manifest.model_validate(manifest))


def check_snapshot(text: str, name: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("LONGZOO_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"card differs from {path}; LONGZOO_UPDATE_SNAPSHOTS=1 rewrites it"


PRETRAIN = {
    "corpora": [
        {
            "name": "People's Daily 1998-01",
            "hub_dataset": "someone/peoples-daily-1998",
            "documents": 3148,
            "tokens": 1843210,
        }
    ],
    "steps": 3000,
    "seq_len": 4096,
    "wwm": "jieba",
    "new_lm_head": False,
    "hyperparameters": {
        "learning_rate": 3e-05,
        "warmup_steps": 500,
        "batch_size": 2,
        "grad_accum": 32,
        "world_size": 1,
        "tokens_per_step": 262144,
        "weight_decay": 0.01,
        "adam_epsilon": 1e-06,
        "max_grad_norm": 5.0,
        "precision": "fp16",
        "mlm_probability": 0.15,
        "seed": 42,
    },
    "eval": {
        "corpus": "People's Daily 1998-01 (held out)",
        "before": {"loss": 2.1, "bpc": 3.0297, "bits_per_char": 3.01, "mlm_accuracy": 0.58, "tokens": 120000},
        "after": {"loss": 1.7, "bpc": 2.4526, "bits_per_char": 2.44, "mlm_accuracy": 0.64, "tokens": 120000},
    },
}


def test_chinese_card_snapshot(converted, tmp_path):
    folder = model_folder(converted, "bert-zh-mlm", tmp_path, "roberta-zh-4096")
    pin_manifest(
        folder,
        {
            "id": "hfl/chinese-roberta-wwm-ext",
            "source": "hub",
            "revision": "5c58d0b8ec1d9014354d691c538661bf00bfdb44",
            "sha256": None,
            "card": {"license": "apache-2.0", "language": ["zh"]},
        },
        pretrain=PRETRAIN,
    )
    rendered = render_card(folder, repo_id="someone/roberta-zh-4096")
    meta = yaml.safe_load(rendered.text.split("---")[1])
    assert meta["language"] == ["zh"] and meta["license"] == "apache-2.0"
    assert meta["base_model"] == "hfl/chinese-roberta-wwm-ext"
    assert meta["pipeline_tag"] == "fill-mask" and meta["library_name"] == "transformers"
    assert {"longformer", "long-context", "longzoo", "chinese"} <= set(meta["tags"])
    assert meta["datasets"] == ["someone/peoples-daily-1998"]
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"bpc": 2.4526, "bits_per_char": 2.44, "mlm_accuracy": 0.64}
    assert "使用方法 / How to use" in rendered.text and "用途与局限" in rendered.text
    assert 'model_id = "someone/roberta-zh-4096"' in rendered.text
    check_snapshot(rendered.text, "card_zh.md")


def test_english_card_snapshot(converted, tmp_path):
    folder = model_folder(converted, "roberta-mlm", tmp_path, "roberta-base-4096")
    pin_manifest(
        folder,
        {
            "id": "FacebookAI/roberta-base",
            "source": "hub",
            "revision": "e2da8e2f811d1448a5b465c236feacd80ffbac7b",
            "sha256": None,
            "card": {"license": "mit", "language": ["en"]},
        },
    )
    rendered = render_card(folder)
    meta = metadata_load(rendered.path)
    assert meta["license"] == "mit" and meta["language"] == ["en"] and "model-index" not in meta
    assert "Not pretrained after conversion" in rendered.text and "使用方法" not in rendered.text
    assert 'model_id = "./roberta-base-4096"' in rendered.text
    assert rendered.path.read_text(encoding="utf-8") == rendered.text
    check_snapshot(rendered.text, "card_en.md")


def test_convert_writes_a_card_with_the_inherited_license(base_copy, tmp_path):
    base = base_copy("roberta-mlm")
    (base / "README.md").write_text("---\nlicense: mit\nlanguage: en\ndatasets:\n- wikitext\n---\n# base\n")
    result = convert(str(base), MAX_POS, tmp_path / "o", attention_window=WINDOW)
    assert result.card_problems == []
    meta = metadata_load(result.out / "README.md")
    assert meta["license"] == "mit" and meta["language"] == ["en"]
    card = read_manifest(result.out).card
    assert card.sources["license"] == "base card"
    assert result.manifest.convert.base.card == {
        "license": "mit",
        "language": ["en"],
        "datasets": ["wikitext"],
    }


def test_missing_license_is_reported_then_asked_for(converted, tmp_path):
    folder = model_folder(converted, "roberta-mlm", tmp_path, "m")
    assert converted["roberta-mlm"].card_problems and "no license" in converted["roberta-mlm"].card_problems[0]
    with pytest.raises(LongzooError, match="no license"):
        render_card(folder)
    result = CliRunner().invoke(app, ["card", str(folder)])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        "error: card metadata: no license: pass --license ID (the base model's card names none)"
    ]
    result = CliRunner().invoke(app, ["card", str(folder), "--license", "apache-2.0", "--language", "en"])
    assert result.exit_code == 0, result.stderr
    assert metadata_load(folder / "README.md")["license"] == "apache-2.0"
    # the choice is remembered: a later re-render (after pretraining, say) keeps it
    assert render_card(folder).metadata["license"] == "apache-2.0"


def test_bad_values_are_refused_before_writing(converted, tmp_path):
    folder = model_folder(converted, "bert-zh-mlm", tmp_path, "m")
    before = (folder / "README.md").read_text()
    with pytest.raises(LongzooError, match="licence identifier"):
        render_card(folder, license="Apache 2")
    with pytest.raises(LongzooError, match="ISO 639"):
        render_card(folder, license="mit", language=["Chinese"])
    with pytest.raises(LongzooError, match="Hub model id"):
        render_card(folder, license="mit", base_model="not a hub id")
    assert (folder / "README.md").read_text() == before


def test_language_from_the_vocabulary(converted, tmp_path):
    zh = render_card(model_folder(converted, "bert-zh-mlm", tmp_path, "zh"), license="mit")
    assert zh.settings.language == ["zh"] and zh.settings.sources["language"] == "vocabulary"
    en = render_card(model_folder(converted, "roberta-mlm", tmp_path, "en"), license="mit")
    assert en.settings.language == []


def test_encoder_only_card_uses_feature_extraction(converted, tmp_path):
    rendered = render_card(model_folder(converted, "bert-encoder", tmp_path, "enc"), license="mit")
    assert rendered.metadata["pipeline_tag"] == "feature-extraction"
    assert "AutoModel.from_pretrained" in rendered.text and "[MASK]" not in rendered.text


def test_validate_metadata_catches_each_problem():
    good = {"license": "mit", "language": ["zh"], "library_name": "transformers", "pipeline_tag": "fill-mask"}
    assert validate_metadata(good) == []
    assert validate_metadata({**good, "license": None})[0].startswith("no license")
    assert "ISO 639" in validate_metadata({**good, "language": ["zh_CN"]})[0]
    assert "pipeline_tag" in validate_metadata({**good, "pipeline_tag": "text-generation"})[0]
    assert "library_name" in validate_metadata({**good, "library_name": "longzoo"})[0]
    bad_index = {**good, "model-index": [{"results": [{"metrics": [{"type": "bpc", "value": "n/a"}]}]}]}
    assert "numeric" in validate_metadata(bad_index)[0]


def test_card_of_a_folder_without_manifest(tmp_path):
    result = CliRunner().invoke(app, ["card", str(tmp_path)])
    assert result.exit_code == 1 and "no longzoo.json" in result.stderr
    assert json.dumps({}) == "{}"  # nothing else to check: no file was written
    assert list(tmp_path.iterdir()) == []
