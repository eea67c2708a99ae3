"""Corpora prepared as 🤗 datasets: the same blocks and masks as in memory, on any number of
processes; cached by fingerprint; held-out splits by document; streamed corpora cut at a budget."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_pretrain_arguments

from longzoo.converters.sample_text import CHINESE
from longzoo.data import arrow
from longzoo.data.arrow import ArrowBlocks, Packing, held_out, load_texts, packed, token_count, tokenized
from longzoo.data.corpus import read_corpus
from longzoo.data.packing import MaskedBlocks, pack, tokenize_texts
from longzoo.errors import LongzooError
from longzoo.progress import Steps
from longzoo.training.corpora import prepare

SEQ_LEN = 64


@pytest.fixture(scope="module")
def tokenizer_dir(converted):
    return converted["bert-zh-mlm"].out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def write_corpus(folder, documents: int, seed: int = 0):
    """``documents`` paragraphs of 5-120 characters of the tiny vocabulary's own text."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(CHINESE) - 130, size=documents)
    lengths = rng.integers(5, 120, size=documents)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.txt"
    path.write_text("\n\n".join(CHINESE[s : s + n] for s, n in zip(starts, lengths, strict=True)), encoding="utf-8")
    return path


def arrow_blocks(path, tokenizer, tokenizer_dir, cache, num_proc=1):
    corpus = load_texts(str(path), cache, num_proc=num_proc)
    packing = Packing(tokenizer, tokenizer_dir, SEQ_LEN, "jieba", num_proc)
    tokens = tokenized(corpus, packing)
    return corpus, tokens, packed(tokens, packing)


def test_arrow_blocks_and_masks_equal_the_in_memory_path(tmp_path, tokenizer, tokenizer_dir):
    path = write_corpus(tmp_path / "c", 300)
    _, _, blocks = arrow_blocks(path, tokenizer, tokenizer_dir, tmp_path / "cache")
    texts = [d.text for d in read_corpus(str(path))]
    memory = pack(
        tokenize_texts(texts, tokenizer, "jieba"),
        SEQ_LEN,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.pad_token_id,
    )
    on_disk = ArrowBlocks(blocks)
    assert len(on_disk) == len(memory) > 10 and on_disk.seq_len == SEQ_LEN
    assert blocks.features["input_ids"].feature.dtype == "uint16"  # a 304-token vocabulary
    for i in range(len(memory)):
        for got, want in zip(on_disk.row(i), memory.row(i), strict=True):
            np.testing.assert_array_equal(got, want)
    a = MaskedBlocks(on_disk, tokenizer, mlm_prob=0.15, seed=7)
    b = MaskedBlocks(memory, tokenizer, mlm_prob=0.15, seed=7)
    for epoch in (0, 1):
        a.epoch = b.epoch = epoch
        for i in (0, 3, len(memory) - 1):
            for key in ("input_ids", "labels", "attention_mask"):
                assert a[i][key].equal(b[i][key]), (epoch, i, key)


def test_blocks_do_not_depend_on_the_number_of_processes(tmp_path, tokenizer, tokenizer_dir):
    path = write_corpus(tmp_path / "c", 2500, seed=1)  # three packing groups of 1,000 documents
    _, tokens, one = arrow_blocks(path, tokenizer, tokenizer_dir, tmp_path / "one", num_proc=1)
    _, _, two = arrow_blocks(path, tokenizer, tokenizer_dir, tmp_path / "two", num_proc=2)
    assert one["input_ids"] == two["input_ids"] and one["word_ids"] == two["word_ids"]
    assert one["length"] == two["length"]
    # nothing dropped: every document token sits in some block
    assert sum(one["content"]) == token_count(tokens) and len(tokens) == 2500


def test_a_rerun_reuses_the_prepared_files(tmp_path, tokenizer, tokenizer_dir, monkeypatch):
    path = write_corpus(tmp_path / "c", 200)
    _, _, first = arrow_blocks(path, tokenizer, tokenizer_dir, tmp_path / "cache")
    monkeypatch.setattr(arrow, "_tokenize_batch", lambda *a, **k: pytest.fail("tokenized again"))
    monkeypatch.setattr(arrow, "_pack_batch", lambda *a, **k: pytest.fail("packed again"))
    _, _, again = arrow_blocks(path, tokenizer, tokenizer_dir, tmp_path / "cache")
    assert again["input_ids"] == first["input_ids"]
    # what the blocks depend on is in the fingerprint: another length or text is prepared anew
    with pytest.raises(pytest.fail.Exception, match="tokenized again"):
        arrow_blocks(write_corpus(tmp_path / "c", 200, seed=5), tokenizer, tokenizer_dir, tmp_path / "cache")


def test_held_out_documents_never_train(tmp_path):
    path = write_corpus(tmp_path / "c", 400)
    corpus = load_texts(str(path), tmp_path / "cache")
    train, evaluation = held_out(corpus, 0.1, seed=3)
    train_texts, eval_texts = list(train.texts["text"]), list(evaluation.texts["text"])
    assert len(eval_texts) == 40 and len(train_texts) == 360
    # by position (the sample text may repeat): disjoint, together the corpus, each in corpus order
    numbered = corpus.texts.add_column("n", list(range(400)))
    train_n, eval_n = (list(part.texts["n"]) for part in held_out(arrow.Corpus("c", "c", numbered), 0.1, seed=3))
    assert not set(train_n) & set(eval_n) and sorted(train_n + eval_n) == list(range(400))
    assert train_n == sorted(train_n) and eval_n == sorted(eval_n)
    assert [corpus.texts["text"][n] for n in eval_n] == eval_texts
    assert held_out(corpus, 0.1, seed=4)[1].texts["text"] != eval_texts  # the seed draws them
    one = load_texts(str(write_corpus(tmp_path / "one", 1)), tmp_path / "cache")
    with pytest.raises(LongzooError, match="at least 2 documents"):
        held_out(one, 0.5, seed=0)


def test_eval_split_prepares_held_out_blocks(tmp_path, tokenizer, tokenizer_dir):
    path = write_corpus(tmp_path / "c", 300)
    args = tiny_pretrain_arguments(eval_split=0.2, num_proc=1)
    data = prepare([str(path)], [], tokenizer, tokenizer_dir, SEQ_LEN, tmp_path / "cache", args, Steps(None))
    assert data.stats[0]["documents"] == 240 and len(data.eval_documents()) == 60
    assert data.eval_names == ["corpus.txt (held-out 20%)"] and len(data.eval) > 0
    assert data.real_tokens > 0 and data.unknown_tokens == 0


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("a.jsonl", '{"text": "好"}\n{"body": "没有"}\n', "a.jsonl:2: JSON line has no string 'text' field"),
        ("a.jsonl", '{"text": "好"}\nnot json\n', "a.jsonl:2: not a JSON line"),
        ("a.jsonl", '{"text": 3}\n', "a.jsonl:1: JSON line has no string 'text' field"),
        ("a.txt", "   \n\n\t\n", "no text left after cleaning"),
        ("a.txt", "", "no text left after cleaning"),
    ],
)
def test_bad_corpora_name_the_file_and_line(tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(LongzooError, match=fragment.replace("(", r"\(")):
        load_texts(str(tmp_path / name), tmp_path / "cache")


def test_folders_mix_text_and_json_lines_in_name_order(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("第一篇。\n还是第一篇。\n\n  \n第二篇。\r\n", encoding="utf-8")
    (folder / "b.jsonl").write_text('{"text": "第三篇", "id": 1}\n\n{"text": "  "}\n', encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("\ufeff第四篇\x07。", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    corpus = load_texts(str(folder), tmp_path / "cache", num_proc=2)
    assert corpus.texts["text"] == ["第一篇。\n还是第一篇。", "第二篇。", "第三篇", "第四篇。"]
    assert corpus.texts["text"] == [d.text for d in read_corpus(str(folder))]  # evaluation reads the same
    assert corpus.name == "corpus" and corpus.documents == 4 and corpus.characters() == 22


def test_a_streamed_hub_corpus_stops_at_its_budget_and_is_cached(tmp_path, monkeypatch):
    import datasets

    calls = []

    def load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return ({"text": f"document {i} " * 10} for i in range(10**9))  # endless, like a big corpus

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    corpus = load_texts("someone/long-docs:en", tmp_path / "cache", char_budget=1000)
    assert calls == [("someone/long-docs", "en", "train", True)]
    assert corpus.cut_at == 1000 and 1000 <= corpus.characters() < 1200 and corpus.hub_dataset == "someone/long-docs:en"
    again = load_texts("someone/long-docs:en", tmp_path / "cache", char_budget=1000)
    assert len(calls) == 1 and again.texts["text"] == corpus.texts["text"]  # read from the Arrow file


def test_a_hub_corpus_that_cannot_stream_is_one_error(tmp_path, monkeypatch):
    import datasets

    def load_dataset(*args, **kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(LongzooError, match=r"^someone/x: cannot stream this Hub dataset \(no network\)$"):
        load_texts("someone/x", tmp_path / "cache", char_budget=1000)


def test_large_vocabularies_get_wider_ids(tokenizer, tokenizer_dir):
    class Big:
        def __len__(self):
            return 250_002  # XLM-R

    assert Packing(tokenizer, tokenizer_dir, SEQ_LEN, "none").id_dtype == "uint16"
    assert Packing(Big(), tokenizer_dir, SEQ_LEN, "none").id_dtype == "int32"


def test_a_run_says_when_its_streamed_corpus_was_cut(tmp_path, tokenizer, tokenizer_dir, monkeypatch):
    import io

    import datasets
    from rich.console import Console

    def load_dataset(name, config, split, streaming):
        return ({"text": CHINESE[i % 300 : i % 300 + 200]} for i in range(10**9))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    shown = io.StringIO()
    args = tiny_pretrain_arguments(max_steps=2, num_proc=1)
    data = prepare(
        ["someone/zh"], [], tokenizer, tokenizer_dir, SEQ_LEN, tmp_path, args, Steps(None, log=Console(file=shown))
    )
    budget = 2 * args.per_device_train_batch_size * args.gradient_accumulation_steps * SEQ_LEN * 8
    assert f"someone/zh: streamed only its first {budget:,} characters" in shown.getvalue()
    assert data.stats[0]["hub_dataset"] == "someone/zh" and data.stats[0]["characters"] >= budget


def test_file_names_are_names_not_patterns(tmp_path):
    folder = tmp_path / "glob"
    folder.mkdir()
    (folder / "a[1].txt").write_text("\n\n".join(["一"] * 3), encoding="utf-8")
    (folder / "a1.txt").write_text("\n\n".join(["二"] * 5), encoding="utf-8")
    assert load_texts(str(folder), tmp_path / "cache").documents == 8
    assert load_texts(str(folder / "a[1].txt"), tmp_path / "cache").documents == 3


def test_a_changed_file_with_its_old_time_is_read_again(tmp_path):
    import os

    path = write_corpus(tmp_path / "c", 40)
    stat = path.stat()
    assert load_texts(str(path), tmp_path / "cache").documents == 40
    write_corpus(tmp_path / "c", 6)  # as cp -p or rsync -t would leave it: new text, old time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_texts(str(path), tmp_path / "cache").documents == 6


def test_several_processes_leave_the_tokenizers_threads_alone(tmp_path, tokenizer, tokenizer_dir, monkeypatch):
    import ctypes
    import os

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    arrow_blocks(write_corpus(tmp_path / "c", 300), tokenizer, tokenizer_dir, tmp_path / "cache", num_proc=2)
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    # datasets sets it for its workers; the C environment the tokenizers read must not keep it
    assert "TOKENIZERS_PARALLELISM" not in os.environ and libc.getenv(b"TOKENIZERS_PARALLELISM") is None


def test_evaluation_reads_files_as_pretraining_does(tmp_path):
    (tmp_path / "mac.txt").write_bytes("一\r\r二\r三".encode())
    (tmp_path / "array.json").write_text('[{"text": "一"}, {"text": "二", "id": 2}]', encoding="utf-8")
    for name in ("mac.txt", "array.json"):
        in_memory = [d.text for d in read_corpus(str(tmp_path / name))]
        assert list(load_texts(str(tmp_path / name), tmp_path / "cache").texts["text"]) == in_memory, name


def test_a_held_out_part_counts_its_own_characters(tmp_path):
    corpus = load_texts(str(write_corpus(tmp_path / "c", 50)), tmp_path / "cache")
    train, evaluation = held_out(corpus, 0.2, seed=0)
    assert train.characters() == sum(len(t) for t in train.texts["text"])
    assert train.characters() + evaluation.characters() == corpus.characters()
