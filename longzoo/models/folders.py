"""What the training steps share about model folders: checks before loading, and the tokenizer files.

Every command that loads a model folder (eval, pretrain, finetune, mask) reads it through
these functions, so a folder it cannot trust — pickle-only weights, a malformed config,
a broken or missing tokenizer, token ids beyond the vocabulary — is one line naming the
folder and what to do, before any model is built.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from longzoo.choices import AttentionForm
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
# Every family longzoo converts was pretrained with at most this many positions.
SHORT_POSITIONS = 512
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


def long_config(model_dir: Path):
    """The config of a long model folder, in either form (:func:`attention_form`); one line for anything else."""
    from longzoo.converters.adapters import ADAPTERS

    config = model_config(model_dir)
    if attention_form(config, model_dir) is not None:
        return config
    if config.model_type not in ADAPTERS:
        raise LongzooError(f"{model_dir}: a {config.model_type} model, which longzoo does not convert or train")
    if hasattr(config, "attention_window"):
        raise LongzooError(
            f"{model_dir}: a long model in a foreign layout; make it a stock Longformer with "
            f"`longzoo convert --base {model_dir}`"
        )
    raise LongzooError(
        f"{model_dir}: a short {config.model_type} model ({config.max_position_embeddings} positions); "
        "run `longzoo convert` first"
    )


def attention_form(config, folder: Path | None = None) -> str | None:
    """``longformer``, ``full`` for a long model of a family longzoo converts, None for a short one.

    A full-attention model is the base's own architecture: it is long when ``longzoo convert
    --attention full`` says so in its manifest, or when it reads more positions than the short
    bases (a long checkpoint from elsewhere, such as BGE-M3).
    """
    from longzoo.converters.adapters import ADAPTERS, usable_positions

    if config.model_type == "longformer":
        return AttentionForm.longformer.value
    if config.model_type not in ADAPTERS or hasattr(config, "attention_window"):  # a foreign long layout
        return None
    if usable_positions(config) > SHORT_POSITIONS or (folder is not None and _converted_full(folder)):
        return AttentionForm.full.value
    return None


def _converted_full(folder: Path) -> bool:
    from longzoo.manifest import read_manifest

    record = read_manifest(folder).convert
    return record is not None and record.attention == AttentionForm.full


def load_tokenizer(folder: Path, config=None):
    """The folder's own tokenizer, checked against the model's vocabulary when ``config`` is given."""
    from longzoo.converters.tokenizers import load_checked_tokenizer

    return load_checked_tokenizer(Path(folder), getattr(config, "vocab_size", None))


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files as they are (a re-save could change them)."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
