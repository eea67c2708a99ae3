"""What the training steps share about model folders: checks before loading, and the tokenizer files.

Every command that loads a model folder (eval, pretrain, finetune, mask) reads it through
these functions, so a folder it cannot trust — pickle-only weights, a malformed config,
a broken or missing tokenizer, token ids beyond the vocabulary — is one line naming the
folder and what to do, before any model is built.
"""

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
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def model_config(model_dir: Path):
    """The transformers config of a folder with safetensors weights; one line for anything else."""
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LongzooError(f"{model_dir}: no config.json; not a model folder")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as exc:  # noqa: BLE001 - config classes raise many types (e.g. strict dataclass errors)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LongzooError(f"{model_dir / 'config.json'}: not a usable model config ({message})") from None
    if not any((model_dir / name).is_file() for name in _SAFE_WEIGHTS):
        if any((model_dir / name).is_file() for name in _PICKLE_WEIGHTS):
            raise LongzooError(
                f"{model_dir}: only pickle weights (pytorch_model.bin), which can run code when loaded; "
                "longzoo loads safetensors only: convert the folder (`longzoo convert --allow-pickle`) "
                "or re-save it with save_pretrained(safe_serialization=True)"
            )
        raise LongzooError(f"{model_dir}: no model.safetensors weights")
    return config


def longformer_config(model_dir: Path):
    """The config of a Longformer folder; a clear error for anything else."""
    config = model_config(model_dir)
    if config.model_type != "longformer":
        raise LongzooError(f"{model_dir}: a {config.model_type} model, not a Longformer; run `longzoo convert` first")
    return config


def load_tokenizer(folder: Path, config=None):
    """The folder's own tokenizer, checked against the model's vocabulary when ``config`` is given."""
    from longzoo.converters.tokenizers import load_checked_tokenizer

    return load_checked_tokenizer(Path(folder), getattr(config, "vocab_size", None))


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files as they are (a re-save could change them)."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
