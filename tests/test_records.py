"""The typed records of ``longzoo.json``: migration of format-1 folders, derived fields, round trips.

``manifests_v1/`` holds manifests written by longzoo before the typed records (format 1),
by a convert -> pretrain (with --eval-corpus) -> eval -> finetune run of a tiny RoBERTa.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longzoo.cards import render_card
from longzoo.cli import app
from longzoo.errors import LongzooError
from longzoo.manifest import add_evaluation, add_step, read_manifest, write_manifest
from longzoo.records import FORMAT, Evaluation, Manifest

V1 = Path(__file__).parent / "manifests_v1"
runner = CliRunner()


def v1_folder(tmp_path: Path, name: str, model: Path | None = None) -> Path:
    """A folder holding a format-1 manifest (and, given ``model``, that model's files)."""
    folder = tmp_path / name
    if model is None:
        folder.mkdir()
    else:
        shutil.copytree(model, folder)
    shutil.copy(V1 / f"{name}.json", folder / "longzoo.json")
    return folder


@pytest.mark.parametrize("name", ["converted", "pretrained-evaluated", "finetuned"])
def test_format_1_manifests_are_read_as_records(tmp_path, name):
    raw = json.loads((V1 / f"{name}.json").read_text())
    assert raw["format"] == 1
    manifest = read_manifest(v1_folder(tmp_path, name))
    parity = manifest.convert.parity
    assert parity.passed and parity.loads_cleanly and parity.full_length.requested == 256
    assert parity.max_abs_diff == raw["convert"]["parity"]["max_abs_diff"]
    assert [h.step for h in manifest.history] == [h["step"] for h in raw["history"]]
    if name == "converted":
        assert manifest.pretrain is None and manifest.evaluations == [] and manifest.architecture.endswith("MaskedLM")
        return
    pretrain = manifest.pretrain
    assert pretrain.wwm == "tokenizer" and pretrain.global_projections == "copied"
    hyper = pretrain.hyperparameters
    assert (hyper.learning_rate, hyper.warmup_steps, hyper.tokens_per_step, hyper.precision) == (3e-5, 0, 128, "fp32")
    assert isinstance(hyper.max_grad_norm, float) and hyper.seed == 42
    assert pretrain.loss_curve.train[0] == tuple(raw["pretrain"]["loss_curve"]["train"][0])
    if name == "pretrained-evaluated":  # format 1's single "eval" section is the first of the evaluations
        (evaluation,) = manifest.evaluations
        assert evaluation.corpus == "c.txt" and evaluation.loss == raw["eval"]["loss"]
        assert manifest.latest_metrics == evaluation
    else:  # fine-tuning had dropped the evaluation of the weights before it
        assert manifest.evaluations == [] and manifest.architecture == "LongformerForSequenceClassification"
        assert manifest.finetune.results["stride"].max_chunks == 4


@pytest.mark.parametrize("name", ["pretrained-evaluated", "finetuned"])
def test_format_1_folders_render_and_push(converted, tmp_path, name):
    folder = v1_folder(tmp_path, name, model=converted["roberta-mlm"].out)
    card = render_card(folder, license="mit")
    assert "| learning rate | 3e-05 |" in card.text and "| tokens per step | 128 |" in card.text
    assert "| masking | whole words (tokenizer words) |" in card.text
    if name == "finetuned":
        assert (
            "| short base model, chunks pooled by a small transformer | 198 (4 chunks of 64, overlap 15)" in card.text
        )
    else:
        assert "this model (`longzoo eval`, window 128) | c.txt | 6.4801" in card.text
    result = runner.invoke(app, ["push", str(folder), "--repo-id", "someone/m", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    written = json.loads((folder / "longzoo.json").read_text())
    assert written["format"] == FORMAT and "eval" not in written  # the card step wrote the current format
    assert read_manifest(folder).model_dump() == read_manifest(folder).model_dump()


def test_a_record_survives_a_round_trip_and_keeps_unknown_fields(tmp_path):
    folder = v1_folder(tmp_path, "finetuned")
    raw = json.loads((folder / "longzoo.json").read_text())
    raw["convert"]["note"] = "checked by hand"
    (folder / "longzoo.json").write_text(json.dumps(raw))
    first = read_manifest(folder)
    write_manifest(folder, first)
    second = read_manifest(folder)
    assert second == first and second.convert.model_extra == {"note": "checked by hand"}
    assert json.loads((folder / "longzoo.json").read_text())["convert"]["parity"]["passed"] is True


def test_passed_is_derived_not_read(tmp_path):
    folder = v1_folder(tmp_path, "converted")
    raw = json.loads((folder / "longzoo.json").read_text())
    raw["convert"]["parity"].update(passed=True, max_abs_diff=0.5)  # a stored verdict that the numbers deny
    (folder / "longzoo.json").write_text(json.dumps(raw))
    assert not read_manifest(folder).convert.parity.passed
    raw["convert"]["parity"].update(passed=False, max_abs_diff=1e-6)
    (folder / "longzoo.json").write_text(json.dumps(raw))
    assert read_manifest(folder).convert.parity.passed


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"format": FORMAT + 1}, "written by a newer longzoo"),
        ({"format": "2"}, "not a longzoo manifest format"),
        ({"history": [{"step": "convert"}]}, "history.0.at: field required"),
        ({"evaluations": [{"loss": "low", "bpc": 1.0}]}, "evaluations.0.loss"),
    ],
)
def test_malformed_records_are_named(tmp_path, edit, message):
    (tmp_path / "longzoo.json").write_text(json.dumps({"format": FORMAT, **edit}))
    with pytest.raises(LongzooError, match=message):
        read_manifest(tmp_path)


def test_evaluations_describe_the_weights_in_the_folder():
    manifest = Manifest()
    first = Evaluation(corpus="a.txt", window=256, loss=2.0, bpc=2.9)
    add_evaluation(manifest, first)
    add_evaluation(manifest, Evaluation(corpus="b.txt", window=256, loss=3.0, bpc=4.3))
    again = Evaluation(corpus="a.txt", window=256, loss=1.5, bpc=2.2)
    add_evaluation(manifest, again)  # the same corpus scored again replaces its older score
    assert [e.corpus for e in manifest.evaluations] == ["b.txt", "a.txt"] and manifest.latest_metrics == again
    assert [h.step for h in manifest.history] == ["eval"] * 3
    add_step(manifest, "card", None)
    assert len(manifest.evaluations) == 2  # a card changes no weights
    add_step(manifest, "pretrain", None)
    assert manifest.evaluations == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["finetune"]["results"].pop("long"), 'finetune.results: value error, no "long" result'),
        (lambda m: m["convert"].update(max_positions=10**400), "convert.max_positions: input should be less than"),
        (lambda m: m["finetune"]["train"].update(documents=-5), "finetune.train.documents: input should be greater"),
        (
            lambda m: m["convert"].update(attention="full"),
            "convert: value error, attention 'full' with attention_window 64",
        ),
        (lambda m: m["convert"].update(attention="dense"), "convert.attention: input should be 'longformer' or 'full'"),
    ],
)
def test_records_out_of_their_bounds_are_one_line(converted, tmp_path, edit, message):
    folder = v1_folder(tmp_path, "finetuned", model=converted["roberta-mlm"].out)
    raw = json.loads((folder / "longzoo.json").read_text())
    edit(raw)
    (folder / "longzoo.json").write_text(json.dumps(raw))
    result = runner.invoke(app, ["card", str(folder), "--license", "mit"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_the_card_keeps_hand_notes_and_escapes_names(converted, tmp_path):
    folder = v1_folder(tmp_path, "pretrained-evaluated", model=converted["roberta-mlm"].out)
    raw = json.loads((folder / "longzoo.json").read_text())
    raw["card"]["reviewed_by"] = "a person"
    raw["eval"]["corpus"] = "news|2024\nheld out"
    (folder / "longzoo.json").write_text(json.dumps(raw))
    card = render_card(folder, license="mit")
    assert read_manifest(folder).card.model_extra == {"reviewed_by": "a person"}
    assert "| news\\|2024 held out | 6.4801 |" in card.text


def test_eval_checks_the_records_before_scoring(converted, tmp_path, monkeypatch):
    from longzoo.evaluation import mlm

    folder = v1_folder(tmp_path, "converted", model=converted["roberta-mlm"].out)
    (folder / "longzoo.json").write_text(json.dumps({"format": FORMAT, "convert": {"base": "x"}}))
    monkeypatch.setattr(mlm, "evaluate", lambda *a, **k: pytest.fail("scored before checking longzoo.json"))
    (tmp_path / "c.txt").write_text("some text " * 50)
    result = runner.invoke(app, ["eval", str(folder), "--corpus", str(tmp_path / "c.txt")])
    assert result.exit_code == 1 and "convert.base" in result.stderr
