"""Run under `torchrun --nproc_per_node 2`: a few pretraining steps with DDP (gloo, CPU).

Each rank writes a digest of its final parameters, so the test can check that both
ranks ended with identical weights.  Arguments: MODEL_DIR CORPUS OUT.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from longzoo.training.arguments import PretrainArguments
from longzoo.training.pretrain import pretrain


class Digest(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        h = hashlib.sha256()
        for name, param in sorted(model.named_parameters()):
            h.update(name.encode())
            h.update(param.detach().to(torch.float32).contiguous().numpy().tobytes())
        rank = int(os.environ.get("RANK", "0"))
        record = {
            "rank": rank,
            "world": int(os.environ["WORLD_SIZE"]),
            "digest": h.hexdigest(),
            "step": state.global_step,
        }
        Path(sys.argv[3]).with_name(f"rank-{rank}.json").write_text(json.dumps(record))


model_dir, corpus, out = sys.argv[1:4]
args = PretrainArguments(
    max_steps=3,
    per_device_train_batch_size=2,
    gradient_accumulation_steps=2,
    learning_rate=1e-3,
    warmup_steps=0,
    seq_len=64,
    save_steps=3,
    activation_checkpointing=True,
)
pretrain(model_dir, [corpus], out, args=args, callbacks=[Digest()])
