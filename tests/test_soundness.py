"""Every output is sound: finite weights, honest losses and records, no user file deleted.

Each test here failed on the code before the "every output is sound" change.
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import MAX_POS, WINDOW, tiny_pretrain_arguments
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from longzoo.cli import app
from longzoo.converters import convert
from longzoo.converters.sample_text import CHINESE
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest
from longzoo.outputs import output_lock, staged_output
from longzoo.training.arguments import PretrainArguments
from longzoo.training.pretrain import pretrain
from longzoo.weights import NonFiniteError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n\n".join([CHINESE[i : i + 90] for i in range(0, len(CHINESE), 90)] * 6), encoding="utf-8")
    return path


def arguments(**kw) -> PretrainArguments:
    return tiny_pretrain_arguments(**{"max_steps": 2, "learning_rate": 1e-3, "save_steps": 1, "logging_steps": 1, **kw})


def one_error_line(result, fragment: str = "") -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


# ----------------------------------------------------------------------------- 1. sound weights
POISONED_LOAD = textwrap.dedent(
    """
    import json, sys, torch
    from longzoo.training.pretrain import _load_mlm
    model, new = _load_mlm(__import__("pathlib").Path(sys.argv[1]), 0)
    head = model.lm_head
    print(json.dumps({
        "new": new,
        "bias_zero": bool((head.bias == 0).all()),
        "finite": all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()),
        "tied": head.decoder.weight.data_ptr() == model.longformer.embeddings.word_embeddings.weight.data_ptr(),
        "ln_identity": bool((head.layer_norm.weight == 1).all()),
    }))
    """
)


def test_a_new_mlm_head_is_initialised_in_poisoned_memory(converted):
    # MALLOC_PERTURB_ fills every fresh allocation with garbage: an uninitialised bias shows.
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    proc = subprocess.run(
        [sys.executable, "-c", POISONED_LOAD, str(converted["bert-encoder"].out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"new": True, "bias_zero": True, "finite": True, "tied": True, "ln_identity": True}


def test_pretraining_an_encoder_only_base_starts_near_uniform_loss(converted, corpus, tmp_path):
    out = tmp_path / "pre"
    result = pretrain(
        converted["bert-encoder"].out, [str(corpus)], out, args=arguments(max_steps=1, learning_rate=1e-5)
    )
    first = result.manifest.pretrain.loss_curve.train[0][1]
    from transformers import AutoConfig

    ln_vocab = math.log(AutoConfig.from_pretrained(out).vocab_size)
    assert math.isfinite(first) and first < 2 * ln_vocab  # garbage biases gave losses near 900
    assert all(torch.isfinite(t).all() for t in load_file(out / "model.safetensors").values())


class _PoisonAfter(TrainerCallback):
    """From optimizer step ``step + 1`` on, the embeddings output NaN: the loss is NaN, the weights stay finite."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            embeddings = model.longformer.embeddings.word_embeddings
            embeddings.register_forward_hook(lambda module, inputs, output: output * float("nan"))


def test_training_stops_at_the_first_non_finite_loss_and_keeps_the_checkpoint(converted, corpus, tmp_path):
    out = tmp_path / "pre"
    with pytest.raises(NonFiniteError, match=r"step 2: the training loss .* --resume"):
        pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(), callbacks=[_PoisonAfter(1)])
    assert not (out / "model.safetensors").exists() and not (out / "longzoo.json").exists()
    checkpoint = out / "checkpoints" / "checkpoint-1"
    assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    resumed = pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(), resume=True)
    assert resumed.steps == 2 and resumed.manifest.pretrain.resumed_from == 1


def test_a_non_finite_gradient_stops_before_the_update(converted, corpus, tmp_path):
    class NanGradient(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.lm_head.dense.weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))

    with pytest.raises(NonFiniteError, match="step 1: the training gradient norm is not finite"):
        pretrain(
            converted["bert-zh-mlm"].out, [str(corpus)], tmp_path / "o", args=arguments(), callbacks=[NanGradient()]
        )


def test_nothing_non_finite_is_written_into_a_manifest(tmp_path):
    from longzoo.manifest import write_manifest
    from longzoo.records import Evaluation, Manifest

    nan = Manifest(evaluations=[Evaluation(corpus="c", loss=float("nan"), bpc=1.0)])
    with pytest.raises(LongzooError, match="evaluations.0.loss is not a finite number"):
        write_manifest(tmp_path, nan)
    assert not (tmp_path / "longzoo.json").exists()
    (tmp_path / "longzoo.json").write_text('{"format": 2, "evaluations": [{"loss": NaN, "bpc": 1}]}')
    with pytest.raises(LongzooError, match="evaluations.0.loss is not a finite number"):
        read_manifest(tmp_path)


# ----------------------------------------------------------------------------- 5. honest losses
def _no_dropout_copy(converted, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "nodrop"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_accumulation_gives_the_weights_and_loss_of_one_big_batch(converted, corpus, tmp_path):
    model_dir = _no_dropout_copy(converted, tmp_path)
    runs = {}
    for name, batch, accum in (("big", 4, 1), ("accumulated", 1, 4)):
        result = pretrain(
            model_dir,
            [str(corpus)],
            tmp_path / name,
            args=arguments(
                max_steps=2,
                per_device_train_batch_size=batch,
                gradient_accumulation_steps=accum,
                learning_rate=1e-3,
                max_grad_norm=0.0,
            ),
        )
        runs[name] = (result, load_file(tmp_path / name / "model.safetensors"))
    (big, big_weights), (acc, acc_weights) = runs["big"], runs["accumulated"]
    curve_big = big.manifest.pretrain.loss_curve.train
    curve_acc = acc.manifest.pretrain.loss_curve.train
    for (_, a), (_, b) in zip(curve_big, curve_acc, strict=True):
        assert a == pytest.approx(b, rel=1e-4)  # the mean loss per token, not x4
    for key, tensor in big_weights.items():
        torch.testing.assert_close(acc_weights[key], tensor, rtol=1e-4, atol=1e-5, msg=key)


def test_logged_loss_does_not_grow_with_accumulation(converted, corpus, tmp_path):
    model_dir = _no_dropout_copy(converted, tmp_path)
    first = []
    for accum in (1, 4):
        result = pretrain(
            model_dir,
            [str(corpus)],
            tmp_path / f"a{accum}",
            args=arguments(max_steps=1, per_device_train_batch_size=1, gradient_accumulation_steps=accum),
        )
        first.append(result.manifest.pretrain.loss_curve.train[0][1])
    assert first[1] == pytest.approx(first[0], rel=0.25)  # was 4x before the fix


# ----------------------------------------------------------------------------- 2. deleting only our own files
def test_force_never_replaces_the_input_or_its_parent(converted, corpus, tmp_path):
    import shutil

    parent = tmp_path / "models"
    model_dir = parent / "conv"
    shutil.copytree(converted["bert-zh-mlm"].out, model_dir)
    (parent / "notes.txt").write_text("mine")
    before = sorted(p.name for p in model_dir.iterdir())
    for target in (model_dir, parent):
        result = runner.invoke(
            app,
            ["pretrain", str(model_dir), "--corpus", str(corpus), "--out", str(target), "--force", "--max-steps", "1"],
        )
        one_error_line(result, "input of this command")
        result = runner.invoke(
            app,
            ["finetune", str(model_dir), "--train", "t.jsonl", "--eval", "e.jsonl", "--out", str(target), "--force"],
        )
        assert result.exit_code != 0
    assert sorted(p.name for p in model_dir.iterdir()) == before and (parent / "notes.txt").read_text() == "mine"


def test_convert_never_replaces_its_base(base_copy):
    base = base_copy("bert-zh-mlm")
    before = sorted(p.name for p in base.iterdir())
    with pytest.raises(LongzooError, match="is an input of this command"):
        convert(str(base), MAX_POS, base, attention_window=WINDOW, force=True)
    with pytest.raises(LongzooError, match="contains an input of this command"):
        convert(str(base), MAX_POS, base.parent, attention_window=WINDOW, force=True)
    assert sorted(p.name for p in base.iterdir()) == before


def test_force_replaces_only_longzoo_outputs(base_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(LongzooError, match="holds files longzoo did not write"):
        convert(str(base_models["bert-zh-mlm"]), MAX_POS, out, attention_window=WINDOW, force=True)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_a_folder_that_appears_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(LongzooError, match="appeared there while this command ran"):
        with staged_output(out) as staging:
            (staging / "model.safetensors").write_text("new")
            out.mkdir()
            (out / "theirs.txt").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left either


def test_one_run_per_output_folder(base_models, corpus, converted, tmp_path):
    out = tmp_path / "out"
    with output_lock(out.absolute()):
        with pytest.raises(LongzooError, match="another longzoo run is writing this folder"):
            convert(str(base_models["bert-zh-mlm"]), MAX_POS, out, attention_window=WINDOW)
        with pytest.raises(LongzooError, match="another longzoo run is writing this folder"):
            pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments())
    assert not out.exists()


def test_leftover_staging_of_a_killed_run_is_cleaned(base_models, tmp_path):
    out = tmp_path / "out"
    killed = tmp_path / ".out.longzoo-abc123_x.partial"
    killed.mkdir()
    (killed / ".longzoo-staging").touch()
    (killed / "model.safetensors").write_text("half")
    unmarked = tmp_path / ".out.longzoo-zzz.partial"  # not ours: no marker
    unmarked.mkdir()
    other = tmp_path / ".out2.longzoo-abc123_x.partial"  # another output's
    other.mkdir()
    (other / ".longzoo-staging").touch()
    convert(str(base_models["bert-zh-mlm"]), MAX_POS, out, attention_window=WINDOW)
    assert not killed.exists() and unmarked.is_dir() and other.is_dir()


def test_zoo_build_never_removes_files_it_did_not_write(base_models, tmp_path):
    from helpers import register_tiny_recipe

    from longzoo.zoo import unregister
    from longzoo.zoo.build import build

    recipe = register_tiny_recipe("test-keep-256", base_models["bert-zh-mlm"], "peoples-daily-1998")
    try:
        converted_dir = tmp_path / "build" / "converted"
        converted_dir.mkdir(parents=True)
        (converted_dir / "keep.txt").write_text("mine")
        with pytest.raises(LongzooError, match="holds files longzoo did not write"):
            build(recipe.name, out=tmp_path / "build")
        assert (converted_dir / "keep.txt").read_text() == "mine"
    finally:
        unregister(recipe.name)


def test_outputs_get_the_users_normal_permissions(base_models, tmp_path):
    old = os.umask(0o022)
    try:
        result = convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "out", attention_window=WINDOW)
    finally:
        os.umask(old)
    for path in result.out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


# ----------------------------------------------------------------------------- 3. inputs within their rules
def _pickle_only(converted, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("command", ["eval", "pretrain", "finetune"])
def test_loading_commands_refuse_pickle_only_folders(converted, corpus, tmp_path, command):
    folder = _pickle_only(converted, tmp_path)
    argv = {
        "eval": ["eval", str(folder), "--corpus", str(corpus)],
        "pretrain": ["pretrain", str(folder), "--corpus", str(corpus), "--out", str(tmp_path / "o")],
        "finetune": ["finetune", str(folder), "--train", "a.jsonl", "--eval", "b.jsonl", "--out", str(tmp_path / "o")],
    }[command]
    one_error_line(runner.invoke(app, argv), "only pickle weights")
    assert not (tmp_path / "o").exists()


def test_tokenizer_must_fit_the_vocabulary(converted, corpus, tmp_path):
    import shutil

    folder = tmp_path / "small-vocab"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 10
    (folder / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["eval", str(folder), "--corpus", str(corpus)])
    one_error_line(result, "this tokenizer does not belong to these weights")


def test_a_model_without_tokenizer_files_is_refused(converted, corpus, tmp_path):
    import shutil

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    result = runner.invoke(app, ["pretrain", str(folder), "--corpus", str(corpus), "--out", str(tmp_path / "o")])
    one_error_line(result, "no tokenizer files")


def test_a_truncated_optimizer_state_is_not_a_checkpoint(converted, corpus, tmp_path):
    out = tmp_path / "pre"
    pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(max_steps=2))
    newest = out / "checkpoints" / "checkpoint-2" / "optimizer.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    from longzoo.training.checkpoints import latest_complete_checkpoint

    assert latest_complete_checkpoint(out / "checkpoints").name == "checkpoint-1"


def test_resuming_a_run_killed_in_its_final_save_runs_no_extra_step(converted, corpus, tmp_path, monkeypatch):
    from longzoo.training import pretrain as module

    out = tmp_path / "pre"

    class Counter(TrainerCallback):
        steps = 0

        def on_step_end(self, *args, **kwargs):
            Counter.steps += 1

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(module, "_publish", killed)
        with pytest.raises(KeyboardInterrupt):
            pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(max_steps=3))
    result = pretrain(
        converted["bert-zh-mlm"].out,
        [str(corpus)],
        out,
        args=arguments(max_steps=3),
        resume=True,
        callbacks=[Counter()],
    )
    assert Counter.steps == 0 and result.steps == 3 and result.manifest.pretrain.steps == 3
    assert math.isfinite(result.train_loss)


# ----------------------------------------------------------------------------- 5. honest records
def test_a_pretrained_encoder_only_card_tells_the_truth(converted, tmp_path):
    out = tmp_path / "pre"
    pretrain(converted["bert-encoder"].out, ["peoples-daily-1998"], out, args=arguments(max_steps=1))
    card = (out / "README.md").read_text(encoding="utf-8")
    manifest = read_manifest(out)
    meta = card.split("---")[1]
    assert "pipeline_tag: fill-mask" in meta and "encoder (no MLM head)" not in card
    assert "long-context Longformer masked language model" in card
    assert "give the base model's outputs exactly" not in card
    assert "datasets:" not in meta  # a built-in corpus is no Hub dataset
    assert "zh" in manifest.card.language  # pretrained on Chinese text
    text = (out / "longzoo.json").read_text(encoding="utf-8")
    assert str(Path.home()) not in text and str(tmp_path) not in text and '"/' not in text


def test_push_uploads_no_local_path(converted, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the stub speaks plain LFS

    folder = tmp_path / "model"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    manifest = json.loads((folder / "longzoo.json").read_text())
    manifest["convert"]["base"]["id"] = "/home/someone/.venv/models/bert"  # written by an older longzoo
    (folder / "longzoo.json").write_text(json.dumps(manifest))
    from hub_stub import HubStub

    from longzoo.hub import push

    with HubStub(token="hf_test") as hub:
        push(folder, "someone/model", endpoint=hub.url, token="hf_test", force=True)
        uploaded = hub.files("someone/model")["longzoo.json"].decode()
    assert "/home/someone" not in uploaded and '"bert"' in uploaded


# ----------------------------------------------------------------------------- 4. one line, never a traceback
NUMERIC = [
    ("pretrain", "--max-steps", ["0", "-1"]),
    ("pretrain", "--batch-size", ["0"]),
    ("pretrain", "--grad-accum", ["0"]),
    ("pretrain", "--lr", ["nan", "inf", "-1", "0"]),
    ("pretrain", "--warmup", ["-1"]),
    ("pretrain", "--seq-len", ["1", "100000"]),
    ("pretrain", "--mlm-prob", ["nan", "0", "1", "2"]),
    ("pretrain", "--seed", ["-1"]),
    ("pretrain", "--save-steps", ["0"]),
    ("pretrain", "--logging-steps", ["0"]),
    ("finetune", "--epochs", ["inf", "nan", "0", "-1"]),
    ("finetune", "--lr", ["nan", "-1"]),
    ("finetune", "--baseline-lr", ["inf"]),
    ("finetune", "--batch-size", ["0"]),
    ("finetune", "--grad-accum", ["-2"]),
    ("finetune", "--max-len", ["1", "100000"]),
    ("finetune", "--max-chunks", ["0"]),
    ("finetune", "--chunk-overlap", ["-1"]),
    ("finetune", "--seed", ["-5"]),
    ("eval", "--seq-len", ["1", "100000"]),
    ("mask", "--mlm-prob", ["nan", "0", "1.5"]),
    ("mask", "--seed", ["-1"]),
    ("convert", "--max-pos", ["0", "-5", "1000000000"]),
    ("convert", "--attention-window", ["0", "3", "-2", "1000000"]),
    ("zoo build", "--max-steps", ["0", "-3"]),
    ("zoo build", "--seq-len", ["1"]),
]


def _argv(command, option, value, converted, base_models, corpus, docs, out):
    model = str(converted["bert-zh-mlm"].out)
    return {
        "pretrain": ["pretrain", model, "--corpus", str(corpus), "--out", str(out), "--max-steps", "1"],
        "finetune": ["finetune", model, "--train", str(docs), "--eval", str(docs), "--out", str(out), "--epochs", "1"],
        "eval": ["eval", model, "--corpus", str(corpus)],
        "mask": ["mask", model, "--text", "我爱北京天安门"],
        "convert": ["convert", "--base", str(base_models["bert-zh-mlm"]), "--max-pos", "256", "--out", str(out)],
        "zoo build": ["zoo", "build", "minilm-4096", "--out", str(out)],
    }[command] + [option, value]


@pytest.mark.parametrize(
    ("command", "option", "value"), [(c, o, v) for c, o, values in NUMERIC for v in values], ids=str
)
def test_bad_numbers_get_one_line_and_write_nothing(command, option, value, converted, base_models, corpus, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"文档 {i}", "label": i % 2}) + "\n" for i in range(4)))
    out = tmp_path / "out"
    argv = _argv(command, option, value, converted, base_models, corpus, docs, out)
    one_error_line(runner.invoke(app, argv))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"\xff\xfe\x00\x01", "binary file"), ('{"text": "好'.encode() + b"\xff" + b'", "label": 1}\n', "invalid UTF-8")],
)
def test_bad_finetune_files_get_one_line(converted, tmp_path, content, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    model = str(converted["bert-zh-mlm"].out)
    result = runner.invoke(
        app, ["finetune", model, "--train", str(bad), "--eval", str(bad), "--out", str(tmp_path / "o")]
    )
    one_error_line(result, fragment)


def test_a_classifier_needs_labels(converted, tmp_path):
    docs = tmp_path / "d.jsonl"
    docs.write_text("".join(json.dumps({"text": "x y z", "label": []}) + "\n" for _ in range(4)))
    model = str(converted["bert-zh-mlm"].out)
    result = runner.invoke(
        app, ["finetune", model, "--train", str(docs), "--eval", str(docs), "--out", str(tmp_path / "o")]
    )
    one_error_line(result, "names no labels")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c.update(model_type=["longformer"]), "config.json"),
        (lambda c: c.update(hidden_size="wide"), "config.json"),
    ],
)
def test_malformed_configs_get_one_line(converted, corpus, tmp_path, edit, fragment):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    one_error_line(runner.invoke(app, ["eval", str(folder), "--corpus", str(corpus)]), fragment)


def test_a_full_disk_is_one_line(monkeypatch, base_models, tmp_path):
    import errno

    from longzoo.converters import generic

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "model.safetensors"))

    monkeypatch.setattr(generic, "_save_tokenizer", full)
    result = runner.invoke(
        app, ["convert", "--base", str(base_models["bert-zh-mlm"]), "--max-pos", "256", "--out", str(tmp_path / "out")]
    )
    one_error_line(result, "no space left on the device")
    assert not (tmp_path / "out").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    from longzoo import cli

    assert cli.error_line(ZeroDivisionError("longzoo bug")) is None


def test_a_manifest_missing_a_section_is_one_line(converted, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    manifest = json.loads((folder / "longzoo.json").read_text())
    del manifest["convert"]["keys"]
    (folder / "longzoo.json").write_text(json.dumps(manifest))
    one_error_line(runner.invoke(app, ["card", str(folder), "--license", "mit"]), "a record is missing or malformed")


def test_bf16_pretraining_runs_on_a_cpu(converted, corpus, tmp_path):
    result = pretrain(converted["bert-zh-mlm"].out, [str(corpus)], tmp_path / "o", args=arguments(bf16=True))
    assert result.steps == 2 and math.isfinite(result.train_loss)
    assert all(t.dtype == torch.float32 for t in load_file(tmp_path / "o" / "model.safetensors").values())


def test_push_refuses_non_finite_weights(converted, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from longzoo.hub import push

    folder = tmp_path / "model"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    state = load_file(folder / "model.safetensors")
    key = sorted(state)[3]
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteError, match=f"tensor {key} holds NaN"):
        push(folder, "someone/model", endpoint="http://127.0.0.1:9", token="hf_test", force=True, dry_run=True)


# ----------------------------------------------------------------------------- found by a hostile sweep
def test_a_pretraining_run_that_fails_before_its_first_checkpoint_leaves_nothing(converted, corpus, tmp_path):
    out = tmp_path / "pre"
    if not torch.cuda.is_available():
        with pytest.raises(LongzooError, match="--fp16 needs a CUDA GPU"):
            pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(fp16=True))
        assert not out.exists()
    with pytest.raises(NonFiniteError, match="step 1"):
        pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(), callbacks=[_PoisonAfter(0)])
    assert not out.exists()  # nothing to resume, so the folder it made is gone


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(history="x"),
        lambda m: m.update(card="x"),
        lambda m: m.update(convert="x"),
        lambda m: m["convert"].update(parity="x"),
        lambda m: m.update(evaluations=[{"loss": 1.0}]),
        lambda m: m.update(pretrain={"steps": "x"}),
    ],
    ids=["history", "card", "convert", "parity", "evaluations", "pretrain"],
)
def test_a_malformed_manifest_is_one_line_everywhere(converted, corpus, tmp_path, edit):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    manifest = json.loads((folder / "longzoo.json").read_text())
    edit(manifest)
    (folder / "longzoo.json").write_text(json.dumps(manifest))
    for argv in (
        ["card", str(folder), "--license", "mit"],
        ["push", str(folder), "--repo-id", "a/b", "--dry-run", "--force"],
        ["pretrain", str(folder), "--corpus", str(corpus), "--out", str(tmp_path / "o"), "--max-steps", "1"],
    ):
        one_error_line(runner.invoke(app, argv), "longzoo.json")
    assert not (tmp_path / "o").exists()


def test_a_deeply_nested_manifest_is_one_line(converted, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    (folder / "longzoo.json").write_text("[" * 100_000 + "]" * 100_000)
    one_error_line(runner.invoke(app, ["card", str(folder)]), "not valid JSON")


def test_a_nan_in_the_base_config_is_refused(base_copy, tmp_path):
    base = base_copy("bert-zh-mlm")
    config = json.loads((base / "config.json").read_text())
    config["layer_norm_eps"] = float("nan")
    (base / "config.json").write_text(json.dumps(config))  # json writes NaN, as a careless script would
    with pytest.raises(LongzooError, match="layer_norm_eps nan is not a number"):
        convert(str(base), MAX_POS, tmp_path / "o", attention_window=WINDOW, verify=False)
    assert not (tmp_path / "o").exists()


def test_a_symlink_loop_as_out_is_one_line(base_models, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    argv = ["convert", "--base", str(base_models["bert-zh-mlm"]), "--max-pos", "256", "--out", str(tmp_path / "a")]
    one_error_line(runner.invoke(app, argv), "cannot be resolved")


def test_a_tokenizer_of_special_tokens_only_is_refused(converted, corpus, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    tokenizer["model"]["vocab"] = {t: i for t, i in tokenizer["model"]["vocab"].items() if t in specials}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    (folder / "vocab.txt").write_text("\n".join(sorted(specials, key=tokenizer["model"]["vocab"].get)) + "\n")
    one_error_line(runner.invoke(app, ["eval", str(folder), "--corpus", str(corpus)]), "only special tokens")


def test_zoo_build_refuses_another_models_conversion(converted, tmp_path):
    import shutil

    from longzoo.zoo.build import build

    shutil.copytree(converted["bert-zh-mlm"].out, tmp_path / "b" / "converted")
    with pytest.raises(LongzooError, match="not this recipe's"):
        build("minilm-4096", out=tmp_path / "b", max_steps=1)


def test_bounds_read_as_numbers():
    result = runner.invoke(app, ["mask", "x", "--text", "a", "--seed", "4294967296"])
    one_error_line(result, "<= 4,294,967,295, not 4,294,967,296")


def test_a_language_given_as_one_string_is_one_code(converted, tmp_path):
    import shutil

    from longzoo.cards import render_card

    folder = tmp_path / "m"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    manifest = json.loads((folder / "longzoo.json").read_text())
    manifest["card"] = {"language": "zh", "license": "mit"}
    (folder / "longzoo.json").write_text(json.dumps(manifest))
    assert render_card(folder).metadata["language"] == ["zh"]


def test_pretraining_into_a_folder_whose_parents_do_not_exist_yet(converted, corpus, tmp_path):
    out = tmp_path / "runs" / "zh" / "pre"
    result = pretrain(converted["bert-zh-mlm"].out, [str(corpus)], out, args=arguments(max_steps=1))
    assert result.steps == 1 and (out / "model.safetensors").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["pre"]  # no lock file or staging left beside it


# ----------------------------------------------------------------------------- precision that fits the hardware
@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_hardware(monkeypatch, native, expected):
    from longzoo.training import arguments

    monkeypatch.setattr(arguments, "native_bf16", lambda: native)
    args = PretrainArguments()
    assert args.precision == expected and args.bf16 == (expected == "bf16") and not args.fp16
    assert arguments.override(args, precision="fp32").bf16 is False  # derived again, not carried over


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--precision", "fp32", "--bf16"], "choose one precision"),
        (["--precision", "fp16"], "--precision fp16 needs a CUDA GPU"),
        (["--precision", "fp64"], "fp64"),
        (["--report-to", "mlflow"], "mlflow"),
        (["--report-to", "wandb"], "--report-to wandb needs the wandb package"),
    ],
)
def test_precision_and_reporting_options_are_checked(converted, corpus, tmp_path, argv, fragment):
    import importlib.util

    if "fp16" in argv and torch.cuda.is_available():
        pytest.skip("fp16 runs where CUDA is")
    if "wandb" in argv and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    model = str(converted["bert-zh-mlm"].out)
    result = runner.invoke(app, ["pretrain", model, "--corpus", str(corpus), "--out", str(tmp_path / "o"), *argv])
    one_error_line(result, fragment)
    assert not (tmp_path / "o").exists()


def test_bf16_training_tracks_fp32(converted, corpus, tmp_path):
    """Six steps in bf16 autocast follow the fp32 loss curve to within 2 % (bf16 keeps 8 bits of mantissa)."""
    model_dir = _no_dropout_copy(converted, tmp_path)
    curves = {}
    for precision in ("fp32", "bf16"):
        result = pretrain(
            model_dir, [str(corpus)], tmp_path / precision, args=arguments(max_steps=6, precision=precision)
        )
        assert result.manifest.pretrain.hyperparameters.precision == precision
        curves[precision] = [loss for _, loss in result.manifest.pretrain.loss_curve.train]
    assert len(curves["fp32"]) == 6 and curves["fp32"][-1] < curves["fp32"][0]  # it learns
    for fp32, bf16 in zip(curves["fp32"], curves["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=0.02)


# ----------------------------------------------------------------------------- sparse prediction
@pytest.mark.parametrize("case_id", ["bert-zh-mlm", "roberta-mlm", "bert-encoder"])
def test_sparse_prediction_gives_the_full_heads_loss_and_gradients(converted, case_id):
    """Logits only at masked positions: the loss and every gradient equal those of the stock head."""
    from transformers import AutoModelForMaskedLM

    from longzoo.models.loading import load
    from longzoo.models.sparse import use_sparse_prediction
    from longzoo.training.trainer import masked_lm_loss

    torch.manual_seed(0)
    model = load(converted[case_id].out, "masked-lm") if case_id == "bert-encoder" else None
    model = model or AutoModelForMaskedLM.from_pretrained(converted[case_id].out)
    model.eval()  # the same function both ways: no dropout (gradients flow all the same)
    ids = torch.randint(5, model.config.vocab_size, (2, 96))
    mask = torch.ones_like(ids)
    mask[1, 70:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 3:90:7] = ids[:, 3:90:7]
    labels[1, 70:] = -100
    losses, grads = [], []
    for sparse in (False, True):
        model.zero_grad()
        if sparse:
            use_sparse_prediction(model)
            outputs = model(input_ids=ids, attention_mask=mask, predict_mask=labels != -100)
            assert outputs.logits.shape == (int((labels != -100).sum()), model.config.vocab_size)
        else:
            outputs = model(input_ids=ids, attention_mask=mask)
        loss = masked_lm_loss(outputs, labels)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert set(model.state_dict()) == set(type(model)(model.config).state_dict())  # still the stock class


def test_attention_dropout_is_the_runs_and_the_saved_config_keeps_the_bases(converted, corpus, tmp_path):
    from transformers import AutoConfig, AutoModelForMaskedLM

    from longzoo.training.pretrain import prepare_model

    model = AutoModelForMaskedLM.from_pretrained(converted["bert-zh-mlm"].out)
    base_rate = model.config.attention_probs_dropout_prob
    assert base_rate > 0
    prepare_model(model, PretrainArguments())
    assert {layer.attention.self.dropout for layer in model.longformer.encoder.layer} == {0.0}
    prepare_model(model, PretrainArguments(attention_dropout=None))  # None: the model's own rate stays
    assert {layer.attention.self.dropout for layer in model.longformer.encoder.layer} == {0.0}
    pretrain(converted["bert-zh-mlm"].out, [str(corpus)], tmp_path / "o", args=arguments(max_steps=1))
    assert AutoConfig.from_pretrained(tmp_path / "o").attention_probs_dropout_prob == base_rate


@pytest.mark.slow
def test_sparse_prediction_compiles_to_the_same_loss_and_gradients(converted):
    """Under torch.compile (boolean-mask indexing makes a data-dependent shape) as in eager mode."""
    from transformers import AutoModelForMaskedLM

    from longzoo.models.attention import use_fast_attention
    from longzoo.models.sparse import use_sparse_prediction
    from longzoo.training.trainer import masked_lm_loss

    torch.manual_seed(0)
    ids = torch.randint(5, 300, (2, 96))
    labels = torch.full_like(ids, -100)
    labels[:, 3:90:7] = ids[:, 3:90:7]
    runs = []
    for compiled in (False, True):
        model = AutoModelForMaskedLM.from_pretrained(converted["roberta-mlm"].out).eval()
        use_sparse_prediction(use_fast_attention(model))
        run = torch.compile(model) if compiled else model
        loss = masked_lm_loss(
            run(input_ids=ids, attention_mask=torch.ones_like(ids), predict_mask=labels != -100), labels
        )
        loss.backward()
        runs.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-5, atol=1e-6)
    assert runs[0][1].keys() == runs[1][1].keys()
    for name, grad in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], grad, rtol=1e-4, atol=1e-5, msg=name)
