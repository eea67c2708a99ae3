"""Loading a model folder's tokenizer so that a broken one is one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from longzoo.converters.source import one_line
from longzoo.errors import LongzooError

# Tokenizer files that are JSON objects; tokenizer.json is checked by tokenizers itself.
_TOKENIZER_JSON = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
_RESTORE = "restore it from the model the base was made from"


def load_checked_tokenizer(folder: Path, vocab_size: int | None = None):
    """The folder's own tokenizer, or one line naming the file to fix.

    transformers loads a folder without vocabulary files as a tokenizer of special tokens
    only (every word unknown), and names no file when one is broken; both are refused
    here, and with ``vocab_size`` so are ids the model has no embedding for.
    """
    from transformers import AutoTokenizer

    _check_tokenizer_files(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for bad files
        raise LongzooError(f"{folder}: cannot load the tokenizer ({one_line(exc)})") from None
    _check_vocabulary_files(tokenizer, folder)
    _check_ids_fit(tokenizer, folder, vocab_size)
    return tokenizer


def _check_tokenizer_files(folder: Path) -> None:
    """Name the broken file: transformers' errors for a bad tokenizer file do not."""
    for name in _TOKENIZER_JSON:
        path = folder / name
        if not path.is_file():
            continue
        try:
            is_object = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        except (OSError, ValueError) as exc:
            raise LongzooError(f"{path}: not valid JSON ({one_line(exc)}); {_RESTORE}") from None
        if not is_object:
            raise LongzooError(f"{path}: not a JSON object; {_RESTORE}")
    path = folder / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for any bad file
            raise LongzooError(f"{path}: not a tokenizers file ({one_line(exc)}); {_RESTORE}") from None


def _check_vocabulary_files(tokenizer, folder: Path) -> None:
    """Without vocabulary files transformers builds a specials-only tokenizer, silently.

    Every word would then be unknown, and the parity check would compare that tokenizer
    with itself.
    """
    names = dict(getattr(type(tokenizer), "vocab_files_names", {}))
    single = names.pop("tokenizer_file", None)
    if (single and (folder / single).is_file()) or (names and all((folder / n).is_file() for n in names.values())):
        return
    wanted = " or ".join(filter(None, [single, " + ".join(names.values())]))
    raise LongzooError(
        f"{folder}: no tokenizer files ({wanted}), so every word would become {tokenizer.unk_token}; "
        "copy the tokenizer files of the model it was trained from into this folder"
    )


def _check_ids_fit(tokenizer, folder: Path, vocab_size: int | None) -> None:
    """Every id the tokenizer produces needs a row in the word embeddings, and it must know words."""
    if len(set(tokenizer.get_vocab().values()) - set(tokenizer.all_special_ids)) == 0:
        raise LongzooError(
            f"{folder}: the tokenizer holds only special tokens (its vocabulary file was not read), so every "
            "word would become unknown; save the tokenizer the weights were trained with again (save_pretrained)"
        )
    if vocab_size is None:
        return
    top = max([*tokenizer.get_vocab().values(), *tokenizer.all_special_ids], default=-1)
    if top >= vocab_size or len(tokenizer) > vocab_size:
        raise LongzooError(
            f"{folder}: the tokenizer has ids up to {top} ({len(tokenizer)} tokens) but config.json has vocab_size "
            f"{vocab_size}; this tokenizer does not belong to these weights, or its added tokens have no embeddings "
            "(resize them and re-save)"
        )
