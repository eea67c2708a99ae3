"""``convert --attention full``: the base's own architecture with a longer position table.

The same proof as the Longformer form (strict keys, parity with the base, a finite run at
full length, a fresh interpreter loading it with stock classes and SDPA), and every step
after conversion (pretrain, eval, finetune, the loaders, the card) taking it as it is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import BASE_POSITIONS, CASE_IDS, MAX_POS, WINDOW, case_by_id, tiny_pretrain_arguments
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from longzoo.cli import app
from longzoo.converters import convert
from longzoo.converters.sample_text import CHINESE
from longzoo.errors import LongzooError
from longzoo.manifest import read_manifest

runner = CliRunner()
FAMILY_CLASS = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert"}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_every_family_converts_with_parity(converted_full, case_id):
    case = case_by_id(case_id)
    result = converted_full[case_id]
    expected = f"{FAMILY_CLASS[case.model_type]}{'ForMaskedLM' if case.mlm else 'Model'}"
    assert result.architecture == expected
    parity = result.parity
    assert parity.passed and parity.loads_cleanly and parity.max_abs_diff <= 1e-4
    assert parity.length == BASE_POSITIONS  # every length the base reads is proof; all of it is checked
    assert parity.attn_implementation == "sdpa" and parity.max_abs_diff_global is None
    assert parity.full_length.tokens == MAX_POS and parity.full_length.finite
    config = json.loads((result.out / "config.json").read_text())
    offset = 0 if case.model_type == "bert" else 2  # the base's own numbering: no pad row added for BERT
    assert config["model_type"] == case.model_type and config["architectures"] == [expected]
    assert config["max_position_embeddings"] == MAX_POS + offset and "attention_window" not in config
    record = read_manifest(result.out).convert
    assert record.attention == "full" and record.attention_window is None and record.max_positions == MAX_POS
    tokenizer_config = json.loads((result.out / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == MAX_POS
    weights = load_file(result.out / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not any("_global" in key for key in weights)


def test_position_table_keeps_the_base_numbering(base_models, converted_full):
    base = load_file(base_models["bert-zh-mlm"] / "model.safetensors")["bert.embeddings.position_embeddings.weight"]
    table = load_file(converted_full["bert-zh-mlm"].out / "model.safetensors")[
        "bert.embeddings.position_embeddings.weight"
    ]
    assert torch.equal(table[:BASE_POSITIONS], base) and torch.equal(table[BASE_POSITIONS:128], base)
    base = load_file(base_models["roberta-mlm"] / "model.safetensors")["roberta.embeddings.position_embeddings.weight"]
    table = load_file(converted_full["roberta-mlm"].out / "model.safetensors")[
        "roberta.embeddings.position_embeddings.weight"
    ]
    assert torch.equal(table[: BASE_POSITIONS + 2], base) and torch.equal(table[2 + BASE_POSITIONS : 2 + 128], base[2:])


def test_parity_catches_a_table_shifted_by_one_row(base_models, tmp_path, monkeypatch):
    import longzoo.converters.generic as generic

    real = generic.extend_positions

    def shifted(table, base_offset, *args, **kwargs):
        return real(table.roll(1, dims=0), base_offset, *args, **kwargs)

    monkeypatch.setattr(generic, "extend_positions", shifted)
    with pytest.raises(LongzooError, match="parity check failed"):
        convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "out", attention="full")
    assert not (tmp_path / "out").exists()


FRESH = r"""
import sys, torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
base, out, mlm, length = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
auto = AutoModelForMaskedLM if mlm else AutoModel
model = auto.from_pretrained(out, attn_implementation="sdpa").eval()
assert model.config._attn_implementation == "sdpa"
reference = auto.from_pretrained(base, attn_implementation="eager").eval()
tok = AutoTokenizer.from_pretrained(out)
text = "清晨的小城慢慢醒来。 The river town woke slowly. " * 200
short = tok(text, max_length=length, truncation=True, return_tensors="pt")
long = tok(text, truncation=True, return_tensors="pt")
pick = (lambda o: o.logits) if mlm else (lambda o: o.last_hidden_state)
with torch.no_grad():
    diff = (pick(model(**short)) - pick(reference(**short))).abs().max().item()
    whole = pick(model(**long))
assert "longzoo" not in sys.modules
print(diff, long["input_ids"].shape[1], bool(torch.isfinite(whole).all()))
"""


@pytest.mark.parametrize("case_id", ["bert-zh-mlm", "xlm-roberta-mlm", "roberta-encoder"])
def test_stock_transformers_loads_it_in_a_fresh_interpreter(base_models, converted_full, case_id):
    """SDPA against the base's eager attention: equal on the base's length, finite at the new one."""
    case = case_by_id(case_id)
    args = [str(base_models[case_id]), str(converted_full[case_id].out), "1" if case.mlm else "0", str(BASE_POSITIONS)]
    done = subprocess.run([sys.executable, "-c", FRESH, *args], capture_output=True, text=True, check=True)
    diff, tokens, finite = done.stdout.split()
    assert float(diff) <= 1e-4 and int(tokens) == MAX_POS and finite == "True"


def test_full_takes_no_window_and_names_its_output(base_models, tmp_path, monkeypatch):
    with pytest.raises(LongzooError, match="--attention-window is for --attention longformer"):
        convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "o", attention="full", attention_window=WINDOW)
    with pytest.raises(LongzooError, match="--attention must be one of longformer, full"):
        convert(str(base_models["bert-zh-mlm"]), MAX_POS, tmp_path / "o", attention="dense")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["convert", "--base", str(base_models["bert-zh-mlm"]), "--max-pos", "128", "--attention", "full"]
    )
    assert result.exit_code == 0, result.output
    assert "BertForMaskedLM with 128 positions, full attention" in result.output and "attention sdpa" in result.output
    assert (tmp_path / "bert-zh-mlm-full-128" / "model.safetensors").is_file()
    bad = runner.invoke(
        app, ["convert", "--base", str(base_models["bert-zh-mlm"]), "--max-pos", "128", "--attention", "x"]
    )
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_a_non_gelu_bert_head_converts_to_full_attention(base_copy, tmp_path):
    base = base_copy("bert-zh-mlm")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(LongzooError, match="--attention full keeps the base's head"):
        convert(str(base), MAX_POS, tmp_path / "lf", attention_window=WINDOW)
    assert convert(str(base), MAX_POS, tmp_path / "full", attention="full").parity.passed


def test_a_long_model_trained_with_a_window_stays_a_longformer(tmp_path):
    """Longformer_ZH / RobertaLong: dropping its window and global projections would change what it computes."""
    from test_zoo import legacy_folder

    folder, _ = legacy_folder(tmp_path, "bert-zh-mlm", positions=256, pickle=False)
    with pytest.raises(LongzooError, match="trained with a sliding window .* converts to --attention longformer only"):
        convert(str(folder), out=tmp_path / "full", attention="full")
    assert not (tmp_path / "full").exists()
    with pytest.raises(LongzooError, match="a long model in a foreign layout; make it a stock Longformer"):
        from longzoo.models.folders import long_config

        long_config(folder)


@pytest.mark.parametrize("form", ["longformer", "full"])
@pytest.mark.parametrize("case_id", ["xlm-roberta-mlm", "camembert-mlm", "bert-zh-mlm"])
def test_a_checkpoint_that_stores_its_tied_decoder_converts(base_copy, tmp_path, case_id, form):
    """Some checkpoints save the decoder weight beside the embeddings it is tied to; XLM-R and
    CamemBERT also register their head before their embeddings."""
    base = base_copy(case_id)
    weights = load_file(base / "model.safetensors")
    embeddings = next(k for k in weights if k.endswith("word_embeddings.weight"))
    decoder = "cls.predictions.decoder.weight" if case_id.startswith("bert") else "lm_head.decoder.weight"
    save_file({**weights, decoder: weights[embeddings].clone()}, base / "model.safetensors", metadata={"format": "pt"})
    settings = {"attention": "full"} if form == "full" else {"attention_window": WINDOW}
    result = convert(str(base), MAX_POS, tmp_path / "out", **settings)
    assert result.parity.passed and result.report.dropped[decoder].startswith("tied:")


# ----------------------------------------------------------------------------- the card
def _python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def test_the_card_says_full_attention_and_its_snippet_runs(converted_full, tmp_path):
    folder = converted_full["bert-zh-mlm"].out
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = card.split("---")[1]
    assert "full-attention" in meta and "- longformer" not in meta and "pipeline_tag: fill-mask" in meta
    assert "library_name: transformers" in meta
    assert "**full attention**" in card and "global_attention_mask" not in card and "global q/k/v" not in card
    assert "(sdpa attention) vs the base model at 64 tokens — passed" in card
    assert "Inputs of at most 64 tokens give the base model's outputs exactly" in card
    (code,) = _python_blocks(card)
    code = code.replace('"./bert-zh-mlm"', json.dumps(str(folder)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


# ----------------------------------------------------------------------------- after conversion
def test_pretrain_trains_the_full_form_and_writes_its_architecture(converted_full, tmp_path):
    from longzoo.training.pretrain import pretrain

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(CHINESE[i : i + 90] for i in range(0, len(CHINESE), 90)) * 4, encoding="utf-8")
    out = tmp_path / "pre"
    args = tiny_pretrain_arguments(max_steps=3, learning_rate=2e-3, attention_dropout=0.0, seq_len=MAX_POS)
    result = pretrain(converted_full["bert-zh-mlm"].out, [str(corpus)], out, eval_corpora=[str(corpus)], args=args)
    assert result.eval_after["loss"] < result.eval_before["loss"]
    record = read_manifest(out).pretrain
    assert record.architecture == "BertForMaskedLM" and record.seq_len == MAX_POS and not record.frozen
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "global q/k/v" not in card and "Continued pretraining" in card
    from transformers import AutoModelForMaskedLM

    model, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert type(model).__name__ == "BertForMaskedLM" and not any(info.values())

    with pytest.raises(LongzooError, match="--global-attention is for Longformer models"):
        pretrain(
            converted_full["bert-zh-mlm"].out,
            [str(corpus)],
            tmp_path / "g",
            args=tiny_pretrain_arguments(global_attention="cls"),
        )


def test_an_encoder_only_full_model_gets_a_defined_tied_head(converted_full, tmp_path):
    from longzoo.training.pretrain import pretrain

    corpus = tmp_path / "c.txt"
    corpus.write_text(CHINESE * 6, encoding="utf-8")
    out = tmp_path / "pre"
    pretrain(converted_full["bert-encoder"].out, [str(corpus)], out, args=tiny_pretrain_arguments(max_steps=1))
    assert read_manifest(out).pretrain.new_lm_head is True
    weights = load_file(out / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert weights["cls.predictions.bias"].abs().max() < 1e-3  # zero, as BERT's recipe starts it, plus one step
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(out)
    decoder = model.cls.predictions.decoder
    assert decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.slow
def test_accumulation_gives_one_big_batch_for_the_full_form(converted_full, tmp_path):
    """The honest loss holds for BertForMaskedLM too (its forward also takes **kwargs)."""
    import shutil

    from longzoo.training.pretrain import pretrain

    folder = tmp_path / "nodrop"
    shutil.copytree(converted_full["bert-zh-mlm"].out, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    )
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(CHINESE[i : i + 60] for i in range(0, len(CHINESE), 60)) * 4, encoding="utf-8")
    weights = {}
    for batch, accum in ((4, 1), (1, 4)):
        args = tiny_pretrain_arguments(
            max_steps=2,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            learning_rate=1e-3,
            max_grad_norm=0.0,
        )
        result = pretrain(folder, [str(corpus)], tmp_path / f"b{batch}", args=args)
        weights[batch] = (
            result.manifest.pretrain.loss_curve.train,
            load_file(tmp_path / f"b{batch}" / "model.safetensors"),
        )
    (curve_big, big), (curve_acc, acc) = weights[4], weights[1]
    for (_, a), (_, b) in zip(curve_big, curve_acc, strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    for key, tensor in big.items():
        torch.testing.assert_close(acc[key], tensor, rtol=1e-4, atol=1e-5, msg=key)


def test_eval_and_the_loaders_take_the_full_form(converted_full, base_models, tmp_path):
    from transformers import BertForMaskedLM, BertForSequenceClassification

    from longzoo.evaluation.mlm import evaluate
    from longzoo.models.loading import LongformerZh, load

    folder = converted_full["bert-zh-mlm"].out
    corpus = tmp_path / "held.txt"
    corpus.write_text("清晨的小城慢慢醒来。河边的桥修好了。" * 30, encoding="utf-8")
    metrics = evaluate(str(folder), [str(corpus)])
    assert metrics["loss"] > 0 and metrics["tokens"] > 0
    model = LongformerZh.from_pretrained(folder)
    assert type(model) is BertForMaskedLM and model.config._attn_implementation == "sdpa"
    classifier = load(folder, "sequence-classification", num_labels=3, fast_attention=True)
    assert type(classifier) is BertForSequenceClassification and not classifier._forward_pre_hooks
    with pytest.raises(LongzooError, match="a short bert model"):
        load(base_models["bert-zh-mlm"])


def test_finetune_trains_the_full_form(converted_full, base_models, tmp_path):
    from test_finetune import probe_files

    from longzoo.training.arguments import FinetuneArguments
    from longzoo.training.finetune import finetune

    train, held = probe_files(tmp_path)
    args = FinetuneArguments(max_len=200, num_train_epochs=1, per_device_train_batch_size=4, baselines=("truncate",))
    result = finetune(
        converted_full["bert-zh-mlm"].out,
        train,
        held,
        tmp_path / "out",
        args=args,
        base=str(base_models["bert-zh-mlm"]),
    )
    assert set(result.results) == {"long", "truncate"}
    record = read_manifest(tmp_path / "out").finetune
    assert record.architecture == "BertForSequenceClassification"
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "this model (long, full attention)" in card and "pipeline_tag: text-classification" in card
    with pytest.raises(LongzooError, match="the baselines need the short base model, not a long one"):
        finetune(
            converted_full["bert-zh-mlm"].out,
            train,
            held,
            tmp_path / "o2",
            args=args,
            base=str(converted_full["bert-zh-mlm"].out),
        )


def test_a_short_base_is_refused_and_a_small_full_conversion_is_not(base_models, converted_full):
    from longzoo.models.folders import attention_form, long_config, model_config

    with pytest.raises(LongzooError, match="a short bert model .* run `longzoo convert` first"):
        long_config(base_models["bert-zh-mlm"])
    folder = converted_full["bert-zh-mlm"].out  # 256 positions: long by its manifest, not by its size
    assert attention_form(model_config(folder), folder) == "full"
    assert long_config(folder).model_type == "bert"


def test_a_full_recipe_builds_and_a_longformer_build_folder_is_not_reused(base_models, tmp_path):
    from helpers import register_tiny_recipe

    from longzoo.zoo import unregister
    from longzoo.zoo.build import build

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(CHINESE[i : i + 90] for i in range(0, len(CHINESE), 90)) * 3, encoding="utf-8")
    full = register_tiny_recipe("test-full-256", base_models["bert-zh-mlm"], str(corpus), attention="full")
    longformer = register_tiny_recipe("test-window-256", base_models["bert-zh-mlm"], str(corpus))
    try:
        result = build(full.name, out=tmp_path / "b", seq_len=64)
        manifest = read_manifest(result.pretrained)
        assert manifest.convert.attention == "full" and manifest.pretrain.architecture == "BertForMaskedLM"
        with pytest.raises(LongzooError, match="holds a full conversion .* not this recipe's longformer"):
            build(longformer.name, out=tmp_path / "b", seq_len=64)
    finally:
        unregister(full.name)
        unregister(longformer.name)


def test_attention_dropout_reaches_the_sdpa_call_of_a_full_model(converted_full):
    from longzoo.training.pretrain import _load_mlm, prepare_model

    model, _ = _load_mlm(converted_full["xlm-roberta-mlm"].out, seed=0)
    assert model.config._attn_implementation == "sdpa"
    prepare_model(model, tiny_pretrain_arguments(attention_dropout=0.3))
    assert all(layer.attention.self.dropout.p == 0.3 for layer in model.base_model.encoder.layer)
    assert model.config.attention_probs_dropout_prob != 0.3  # the saved config keeps the base's value


POISONED_FULL_LOAD = """
import json, sys, torch
from pathlib import Path
from longzoo.training.pretrain import _load_mlm
model, new = _load_mlm(Path(sys.argv[1]), 0)
head = model.cls.predictions
print(json.dumps({
    "new": new,
    "bias_zero": bool((head.bias == 0).all()),
    "finite": all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()),
    "tied": head.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr(),
    "ln_identity": bool((head.transform.LayerNorm.weight == 1).all()),
}))
"""


def test_a_new_bert_head_is_initialised_in_poisoned_memory(converted_full):
    """MALLOC_PERTURB_ fills fresh allocations with garbage: a BERT head left uninitialised shows."""
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    done = subprocess.run(
        [sys.executable, "-c", POISONED_FULL_LOAD, str(converted_full["bert-encoder"].out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"new": True, "bias_zero": True, "finite": True, "tied": True, "ln_identity": True}
