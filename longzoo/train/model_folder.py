"""What the training steps share about model folders: the Longformer check and the tokenizer files."""

from __future__ import annotations

import shutil
from pathlib import Path

from longzoo.errors import LongzooError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)


def longformer_config(model_dir: Path):
    """The config of a Longformer folder; a clear error for anything else."""
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise LongzooError(f"{model_dir}: no config.json; not a model folder")
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "longformer":
        raise LongzooError(f"{model_dir}: a {config.model_type} model, not a Longformer; run `longzoo convert` first")
    return config


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files as they are (a re-save could change them)."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
