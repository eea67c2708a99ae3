"""Packing, evaluation, continued pretraining, resume, bad input."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from helpers import MAX_POS, tiny_pretrain_arguments
from safetensors.torch import load_file
from typer.testing import CliRunner

from longzoo.cli import app
from longzoo.converters.sample_text import CHINESE
from longzoo.data.packing import TokenizedDoc, pack
from longzoo.evaluation.mlm import evaluate, load_mlm
from longzoo.manifest import read_manifest
from longzoo.training.arguments import PretrainArguments
from longzoo.training.pretrain import pretrain

runner = CliRunner()


# ----------------------------------------------------------------------------- packing
def doc(n, start=0):
    ids = np.arange(start, start + n) + 100
    return TokenizedDoc(ids=ids, words=np.arange(n), chars=np.ones(n, dtype=np.int64))


def test_packing_keeps_every_token_and_prefers_whole_documents():
    docs = [doc(5), doc(20, 1000), doc(3, 2000), doc(40, 3000), doc(6, 4000)]
    blocks = pack(docs, 16, cls_id=2, sep_id=3, pad_id=0)
    assert blocks.input_ids.shape[1] == 16 and (blocks.input_ids[:, 0] == 2).all()
    content = blocks.input_ids[(blocks.input_ids >= 100)]
    assert content.tolist() == np.concatenate([d.ids for d in docs]).tolist()
    rows = [r[r > 0].tolist() for r in blocks.input_ids]
    assert rows[0] == [2, *range(100, 105), 3]  # doc 0 whole; doc 1 (20) does not fit: new block
    assert rows[1] == [2, *range(1100, 1114), 3]  # long doc 1 cut into a full block...
    assert rows[2] == [2, *range(1114, 1120), 3, *range(2100, 2103), 3]  # ...its rest shares with doc 2
    assert all(len(r) <= 16 for r in rows)
    assert (blocks.attention_mask.sum(1) == [len(r) for r in rows]).all()
    for ids, words in zip(blocks.input_ids, blocks.word_ids, strict=True):  # numbered within each block:
        content = words[ids >= 100]  # every token here is its own word, distinct across documents
        assert content.tolist() == list(range(len(content))) and (words[ids < 100] == -1).all()
    # 5 bytes a token: ids, word ids and mask in the smallest dtypes that hold them
    assert (blocks.input_ids.dtype, blocks.word_ids.dtype, blocks.attention_mask.dtype) == (
        np.uint16,
        np.int16,
        np.uint8,
    )


# ----------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def zh_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    paragraphs = [CHINESE[i : i + 90] for i in range(0, len(CHINESE), 90)]
    (folder / "train.txt").write_text("\n\n".join(paragraphs * 6), encoding="utf-8")
    (folder / "held.txt").write_text("\n\n".join(paragraphs[:4]), encoding="utf-8")
    return folder


def uniform(model):
    """Make every MLM prediction uniform: loss is then exactly ln(vocab)."""
    with torch.no_grad():
        for param in (model.lm_head.layer_norm.weight, model.lm_head.layer_norm.bias, model.lm_head.bias):
            param.zero_()
    return model


def test_eval_known_answer(converted, zh_corpus):
    model, tokenizer = load_mlm(converted["bert-zh-mlm"].out)
    metrics = evaluate(None, [str(zh_corpus / "held.txt")], model=uniform(model), tokenizer=tokenizer)
    vocab = model.config.vocab_size
    assert metrics["loss"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert metrics["bpc"] == pytest.approx(math.log2(vocab), rel=1e-6)
    # every predicted token is one Han character, so bits per character equal bits per token
    assert metrics["bits_per_char"] == pytest.approx(metrics["bpc"], rel=1e-6)
    assert metrics["mlm_accuracy"] == 0.0  # argmax of a uniform row is id 0, [PAD], never a label
    assert metrics["predicted"] == pytest.approx(0.15 * metrics["tokens"], rel=0.1)
    # every masked token is scored once, whatever the window
    narrow = evaluate(None, [str(zh_corpus / "held.txt")], seq_len=16, model=model, tokenizer=tokenizer)
    assert narrow["predicted"] == metrics["predicted"] and narrow["window"] == 16


def test_eval_compares_base_and_converted(base_models, converted, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("清晨的小城慢慢醒来。\n\n渔民们解开了船绳。\n\n路灯还亮着。", encoding="utf-8")
    base = evaluate(base_models["bert-zh-mlm"], [str(short)], wwm="none")
    long = evaluate(converted["bert-zh-mlm"].out, [str(short)], wwm="none")
    assert base["window"] == 64 and long["window"] == MAX_POS
    assert base["predicted"] == long["predicted"] > 0
    assert long["loss"] == pytest.approx(base["loss"], abs=1e-4)  # within the parity length


def test_eval_cli_json_records_the_result_in_the_card(converted, zh_corpus, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(converted["bert-zh-mlm"].out, folder)
    result = runner.invoke(app, ["eval", str(folder), "--corpus", str(zh_corpus / "held.txt"), "--json"])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"loss", "bpc", "bits_per_char", "mlm_accuracy", "tokens"} <= set(metrics)
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))
    (record,) = read_manifest(folder).evaluations
    assert record.corpus == "held.txt" and record.bpc == metrics["bpc"] and record.hub_dataset is None
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "this model (`longzoo eval`, window 256)" in card and f"{metrics['bpc']:.4f}" in card


def test_eval_refuses_encoder_only(converted, zh_corpus):
    result = runner.invoke(app, ["eval", str(converted["bert-encoder"].out), "--corpus", str(zh_corpus / "held.txt")])
    assert result.exit_code == 1 and "no MLM head" in result.stderr


# ----------------------------------------------------------------------------- pretraining
def arguments(**kw):
    return tiny_pretrain_arguments(**{"max_steps": 8, "learning_rate": 2e-3, "save_steps": 4, "logging_steps": 2, **kw})


def test_pretrain_lowers_held_out_loss_and_writes_a_stock_model(converted, zh_corpus, tmp_path):
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "pre"
    result = pretrain(
        converted["bert-zh-mlm"].out,
        [str(zh_corpus / "train.txt")],
        out,
        eval_corpora=[str(zh_corpus / "held.txt")],
        args=arguments(max_steps=12),
    )
    assert result.steps == 12
    assert result.eval_after["loss"] < result.eval_before["loss"]
    manifest = read_manifest(out)
    record = manifest.pretrain
    assert [h.step for h in manifest.history][-2:] == ["pretrain", "card"]
    assert record.corpora[0].name == "train.txt" and record.corpora[0].documents == 6 * len(range(0, len(CHINESE), 90))
    assert record.eval.before.loss == result.eval_before["loss"]
    assert record.wwm == "jieba" and record.new_lm_head is False
    assert record.loss_curve.train and record.loss_curve.eval
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "Continued pretraining" in readme and "loss.png" in readme and "12 at 64 tokens" in readme
    model, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    attn = model.longformer.encoder.layer[0].attention.self
    assert torch.equal(attn.query.weight, attn.query_global.weight)  # copied again after training
    before = load_file(converted["bert-zh-mlm"].out / "model.safetensors")
    assert not torch.equal(attn.query.weight, before["longformer.encoder.layer.0.attention.self.query.weight"])


def test_encoder_only_gets_a_tied_head(converted, zh_corpus, tmp_path):
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "pre"
    pretrain(converted["bert-encoder"].out, [str(zh_corpus / "train.txt")], out, args=arguments(max_steps=2))
    assert read_manifest(out).pretrain.new_lm_head is True
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.lm_head.decoder.weight.data_ptr() == model.longformer.embeddings.word_embeddings.weight.data_ptr()
    assert "new, tied to the word embeddings" in (out / "README.md").read_text(encoding="utf-8")


def test_global_attention_cls_trains_global_projections(converted, zh_corpus, tmp_path):
    out = tmp_path / "pre"
    result = pretrain(
        converted["bert-zh-mlm"].out,
        [str(zh_corpus / "train.txt")],
        out,
        args=arguments(max_steps=3, global_attention="cls"),
    )
    weights = load_file(out / "model.safetensors")
    layer = "longformer.encoder.layer.0.attention.self."
    assert not torch.equal(weights[layer + "query.weight"], weights[layer + "query_global.weight"])
    assert result.manifest.pretrain.global_projections == "trained"


class _Crash(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_weights(converted, zh_corpus, tmp_path):
    from transformers import TrainerCallback

    model_dir = converted["bert-zh-mlm"].out
    corpus = [str(zh_corpus / "train.txt")]
    pretrain(model_dir, corpus, tmp_path / "straight", args=arguments())

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise _Crash

    with pytest.raises(_Crash):
        pretrain(model_dir, corpus, tmp_path / "killed", args=arguments(), callbacks=[KillAfterSave()])
    checkpoints = tmp_path / "killed" / "checkpoints"
    # a second kill, in the middle of writing checkpoint-8: weights there, no trainer state
    shutil.copytree(checkpoints / "checkpoint-4", checkpoints / "checkpoint-8")
    (checkpoints / "checkpoint-8" / "trainer_state.json").unlink()
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # no final model from a dead run

    result = pretrain(model_dir, corpus, tmp_path / "killed", args=arguments(), resume=True)
    assert result.steps == 8 and result.manifest.pretrain.resumed_from == 4
    assert (checkpoints / "checkpoint-8.incomplete").is_dir()
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)


def test_cache_is_reused(converted, zh_corpus, tmp_path, monkeypatch):
    out = tmp_path / "pre"
    pretrain(converted["bert-zh-mlm"].out, [str(zh_corpus / "train.txt")], out, args=arguments(max_steps=1))
    assert list((out / "cache" / "datasets").rglob("*.arrow"))
    from longzoo.data import arrow

    monkeypatch.setattr(arrow, "_tokenize_batch", lambda *a, **k: pytest.fail("tokenized twice"))
    pretrain(
        converted["bert-zh-mlm"].out, [str(zh_corpus / "train.txt")], out, args=arguments(max_steps=2), resume=True
    )


# ----------------------------------------------------------------------------- bad input
def invoke_pretrain(model_dir, corpus, out, *extra):
    return runner.invoke(
        app, ["pretrain", str(model_dir), "--corpus", str(corpus), "--out", str(out), "--max-steps", "1", *extra]
    )


def one_line(result, fragment):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "no text left"),
        (b"   \n\n \t \n", "no text left"),
        (b"\x00\x01\x02binary\x00", "binary file"),
        ("正常的文字".encode() + b"\xff\xfe" + "更多".encode(), "invalid UTF-8 at byte offset 15"),
    ],
)
def test_bad_corpus_files(converted, tmp_path, content, fragment):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, corpus, tmp_path / "o"), fragment)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_bad_jsonl(converted, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "好"}\n{"title": "no text"}\n', encoding="utf-8")
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, corpus, tmp_path / "o"), "c.jsonl:2")


def test_missing_corpus(converted, tmp_path):
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, tmp_path / "nope.txt", tmp_path / "o"), "no such file")


def test_seq_len_above_positions(converted, zh_corpus, tmp_path):
    result = invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", tmp_path / "o", "--seq-len", "300")
    one_line(result, f"above the model's {MAX_POS} positions")
    assert not (tmp_path / "o").exists()


def test_not_a_longformer(base_models, zh_corpus, tmp_path):
    one_line(invoke_pretrain(base_models["bert-zh-mlm"], zh_corpus / "train.txt", tmp_path / "o"), "a short bert model")


def test_unwritable_output(converted, zh_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", blocker / "o"), "cannot write here")


def test_force_keeps_the_previous_checkpoints_when_the_corpus_is_bad(converted, zh_corpus, tmp_path):
    out = tmp_path / "o"
    assert invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", out).exit_code == 0
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好"}\n{"body": 1}\n', encoding="utf-8")
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, bad, out, "--force"), "bad.jsonl:2")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints


def test_existing_output_needs_resume_or_force(converted, zh_corpus, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", out), "--resume")
    assert (out / "mine.txt").read_text() == "keep"
    one_line(
        invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", tmp_path / "new", "--resume"),
        "nothing to resume",
    )


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--eval-split", "1.5"], "--eval-split"),
        (["--eval-split", "nan"], "--eval-split"),
        (["--eval-split", "0"], "--eval-split"),
        (["--num-proc", "0"], "--num-proc"),
        (["--eval-split", "0.1", "--eval-corpus", "x.txt"], "choose --eval-corpus or --eval-split, not both"),
        (["--eval-corpus", "missing.txt"], "missing.txt: no such file"),
    ],
)
def test_bad_data_options(converted, zh_corpus, tmp_path, extra, fragment):
    out = tmp_path / "o"
    one_line(invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", out, *extra), fragment)
    assert not out.exists()


def test_eval_split_evaluates_held_out_documents(converted, zh_corpus, tmp_path):
    out = tmp_path / "o"
    args = ["--eval-split", "0.25", "--num-proc", "2", "--logging-steps", "1", "--save-steps", "1"]
    result = invoke_pretrain(converted["bert-zh-mlm"].out, zh_corpus / "train.txt", out, *args)
    assert result.exit_code == 0, result.output
    record = read_manifest(out).pretrain
    assert record.eval_corpora == ["train.txt (held-out 25%)"] and record.eval.before and record.eval.after
    from longzoo.data.corpus import read_corpus

    documents = len(read_corpus(str(zh_corpus / "train.txt")))
    held = round(documents * 0.25)
    assert record.corpora[0].documents == documents - held and record.eval.after.documents == held
    assert record.options["eval_split"] == 0.25
    assert "num_proc" not in record.options  # this machine's cores, not a setting of the run


# ----------------------------------------------------------------------------- distributed
@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_weights(converted, zh_corpus, tmp_path):
    """torchrun, two CPU processes (gloo), gradient checkpointing on: the classic DDP failure."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(worker),
               str(converted["bert-zh-mlm"].out), str(zh_corpus / "train.txt"), str(out)]  # fmt: skip
    for _attempt in range(2):
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        # Only a failed rendezvous (the launcher's loopback sockets) is retried, never a result.
        if proc.returncode == 0 or not re.search(r"rendezvous|Connection (refused|reset)|EADDRINUSE", proc.stderr):
            break
        shutil.rmtree(out, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    record = read_manifest(out).pretrain
    assert record.world_size == 2 and record.steps == 3
    assert record.hyperparameters.world_size == 2 and record.hyperparameters.tokens_per_step % 2 == 0


# ----------------------------------------------------------------------------- corpora
def test_corpus_formats(tmp_path):
    from longzoo.data.corpus import read_corpus

    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("第一篇。\n还是第一篇。\n\n\n第二篇。\r\n", encoding="utf-8")
    (folder / "sub" / "b.jsonl").write_text('{"text": "第三篇"}\n\n{"text": "  "}\n', encoding="utf-8")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    docs = read_corpus(str(folder))
    assert [d.text for d in docs] == ["第一篇。\n还是第一篇。", "第二篇。", "第三篇"]
    assert {d.source for d in docs} == {"corpus"}


def test_hub_dataset_stream_stops_at_the_budget(monkeypatch):
    import sys
    import types

    from longzoo.data.corpus import read_corpus

    calls = {}

    def load_dataset(name, config, split, streaming):
        calls.update(name=name, config=config, split=split, streaming=streaming)
        return ({"text": f"document {i} " * 10} for i in range(10**9))  # endless, like a big corpus

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    docs = read_corpus("someone/long-docs:en", stream_char_budget=1000)
    assert calls == {"name": "someone/long-docs", "config": "en", "split": "train", "streaming": True}
    assert 1000 <= sum(len(d.text) for d in docs) < 1200 and docs[0].source == "someone/long-docs:en"


# ----------------------------------------------------------------------------- one definition per setting
def test_arguments_derive_again_what_a_copy_changes():
    from longzoo.training.arguments import override

    args = PretrainArguments(max_steps=2000)
    assert (args.warmup_steps, args.save_steps, args.logging_steps, args.eval_steps) == (200, 200, 40, 400)
    short = override(args, max_steps=100)  # dataclasses.replace alone would keep warmup 200 for 100 steps
    assert (short.warmup_steps, short.save_steps, short.logging_steps, short.eval_steps) == (10, 10, 2, 20)
    kept = override(args, max_steps=100, warmup_steps=50)  # a value given is never derived over
    assert kept.warmup_steps == 50 and kept.per_device_eval_batch_size == kept.per_device_train_batch_size
    assert args.recorded()["learning_rate"] == 3e-5 and "output_dir" not in args.recorded()


@pytest.mark.parametrize(
    ("command", "cls"),
    [("pretrain", "PretrainArguments"), ("finetune", "FinetuneArguments")],
)
def test_cli_training_options_are_the_arguments_fields(command, cls):
    """Every option of the command is a field of its arguments, or one of the few that are not settings."""
    import dataclasses
    import inspect

    from longzoo.cli import training
    from longzoo.training import arguments, defaults

    fields = {f.name: f for f in dataclasses.fields(getattr(arguments, cls))}
    not_settings = {"model_dir", "corpus", "out_dir", "eval_corpus", "resume", "force", "train", "eval_file", "base"}
    table = defaults.PRETRAIN if command == "pretrain" else defaults.FINETUNE
    for name, parameter in inspect.signature(getattr(training, command)).parameters.items():
        assert name in fields or name in not_settings, f"--{name} of {command} is not a field of {cls}"
        if name in fields and name in table:  # the CLI shows the default the arguments use
            assert parameter.default == table[name] == fields[name].default


# ----------------------------------------------------------------------------- feedback on long work
def test_the_plan_is_questioned_when_the_corpus_is_unknown_text_or_too_small(converted, tmp_path):
    import io

    from rich.console import Console
    from transformers import AutoTokenizer

    from longzoo.progress import Steps
    from longzoo.training.corpora import prepare
    from longzoo.training.pretrain import _warn_about_the_plan

    model_dir = converted["bert-zh-mlm"].out
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    corpus = tmp_path / "corpus.txt"

    def notes(text: str, **settings) -> str:
        corpus.write_text(text, encoding="utf-8")
        args, shown = arguments(**settings), io.StringIO()
        data = prepare([str(corpus)], [], tokenizer, model_dir, 64, tmp_path / "cache", args, Steps(None))
        _warn_about_the_plan(data, tokenizer, args, Steps(None, log=Console(file=shown)))
        return shown.getvalue()

    known = CHINESE[:400]  # the tiny vocabulary's own text: about 7 blocks of 64 tokens
    assert notes(known, max_steps=2, per_device_train_batch_size=2) == ""
    text = notes(known + "\n\n" + "Привет мир " * 40, max_steps=2, per_device_train_batch_size=2)
    assert "% of the corpus tokens are [UNK]" in text and "times over" not in text
    text = notes(known, max_steps=40, per_device_train_batch_size=2)
    times, blocks = map(
        int, re.search(r"40 steps read the corpus (\d+) times over \((\d+) blocks of 64", text).groups()
    )
    assert 5 <= blocks <= 9 and times == round(80 / blocks)


def test_steps_report_progress_with_tokens_per_second():
    from longzoo.progress import Steps
    from longzoo.training.callbacks import StepsCallback

    class Bar:
        def __init__(self):
            self.calls = []

        def add_task(self, description, total=None, rate=""):
            self.total = total
            return 0

        def update(self, task, advance=0, rate=""):
            self.calls.append((advance, rate))

        def remove_task(self, task):
            pass

    class State:
        is_world_process_zero, global_step = True, 4

    bar = Bar()
    with Steps(bar).step("Training", total=3) as advance:
        callback = StepsCallback(Steps(bar), advance=advance, tokens_per_step=1000)
        callback.on_train_begin(None, State, None)
        for _ in range(3):
            State.global_step += 1
            callback.on_step_end(None, State, None)
    assert bar.total == 3 and [n for n, _ in bar.calls] == [1, 1, 1]
    assert all(rate.endswith("tokens/s") for _, rate in bar.calls)
