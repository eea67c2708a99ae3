"""Finding a base model (local folder or Hub id) and reading its weights safely."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from longzoo.errors import LongzooError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"

# What a conversion needs from a Hub repository; TF/Flax/ONNX files are never fetched.
_HUB_PATTERNS = [
    "config.json",
    "*.safetensors",
    SAFETENSORS_INDEX,
    "tokenizer*",
    "vocab.*",
    "merges.txt",
    "*.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "README.md",
]


@dataclass(frozen=True)
class BaseSource:
    """Where the base model's files are and what identifies them."""

    name: str  # what the user typed
    path: Path  # local folder with config.json
    hub_id: str | None = None
    revision: str | None = None  # commit sha for Hub snapshots


def looks_like_path(name: str) -> bool:
    """True for a name the user meant as a local path rather than a Hub id."""
    # A Hub id is "name" or "owner/name"; anything else the user meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_base(name: str, revision: str | None = None, allow_pickle: bool = False) -> BaseSource:
    """Return a local folder for ``name``: the folder itself, or a Hub snapshot.

    Hub downloads go through ``huggingface_hub.snapshot_download``, so ``HF_ENDPOINT``,
    ``HF_TOKEN`` (or the stored login) and ``HF_HUB_OFFLINE`` behave as everywhere else.
    """
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise LongzooError(f"{name}: no config.json in this folder; is it a transformers model?")
        return BaseSource(name=name, path=local.resolve())
    if local.exists():
        raise LongzooError(f"{name}: not a folder")
    if looks_like_path(name):
        raise LongzooError(f"{name}: no such folder")
    return _download(name, revision, allow_pickle)


def _download(repo_id: str, revision: str | None, allow_pickle: bool) -> BaseSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = _HUB_PATTERNS + ([PICKLE, PICKLE_INDEX, "pytorch_model-*.bin"] if allow_pickle else [])
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except GatedRepoError:
        raise LongzooError(f"{repo_id}: gated repository; accept its terms on the Hub and log in (HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise LongzooError(f"{repo_id}: not found on the Hub (check the id, or log in if it is private)") from None
    except RevisionNotFoundError:
        raise LongzooError(f"{repo_id}: revision {revision!r} not found") from None
    except LocalEntryNotFoundError:
        raise LongzooError(
            f"{repo_id}: not a local folder and not in the Hub cache, and the Hub cannot be "
            "reached (offline or HF_HUB_OFFLINE=1); download it first or pass a folder"
        ) from None
    except HFValidationError:
        raise LongzooError(f"{repo_id}: no such folder, and not a valid Hub id") from None
    except OSError as exc:  # connection refused, DNS failure, full disk
        raise LongzooError(f"{repo_id}: download failed: {exc}") from None
    if not (path / "config.json").is_file():
        raise LongzooError(f"{repo_id}: the repository has no config.json")
    # snapshot folders are named by commit sha, which pins exactly what was converted
    return BaseSource(name=repo_id, path=path, hub_id=repo_id, revision=path.name)


def weight_files(folder: Path, allow_pickle: bool) -> list[Path]:
    """The weight files of ``folder``: safetensors by default, pickles only on request."""
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (PICKLE, PICKLE_INDEX)):
        if (folder / single).is_file():
            files = [folder / single]
        elif (folder / index).is_file():
            files = _shards(folder / index)
        else:
            continue
        if single == PICKLE and not allow_pickle:
            raise LongzooError(
                f"{folder}: only pickle weights ({single}); pickles can run code when loaded. "
                "Pass --allow-pickle to load them with torch.load(weights_only=True)"
            )
        return files
    raise LongzooError(f"{folder}: no model.safetensors or pytorch_model.bin weights found")


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LongzooError(f"{index}: corrupt shard index ({exc})") from None
    files = [index.parent / name for name in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise LongzooError(f"{index}: shard files missing: {', '.join(missing)}")
    return files


def load_weights(files: list[Path]) -> dict:
    """Read every tensor of ``files`` into one CPU state dict (keys as stored)."""
    import torch
    from safetensors.torch import load_file

    state: dict = {}
    for file in files:
        try:
            if file.suffix == ".safetensors":
                part = load_file(file, device="cpu")
            else:
                part = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to parse means a bad file
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LongzooError(f"{file}: corrupt or truncated weights file ({detail})") from None
        if not isinstance(part, dict):
            raise LongzooError(f"{file}: does not hold a state dict")
        state.update(part)
    return state


def sha256_files(files: list[Path]) -> dict[str, str]:
    """Content hashes of ``files``, so a local base is identified by what it holds."""
    digests = {}
    for file in files:
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        digests[file.name] = h.hexdigest()
    return digests


def read_base_card(folder: Path) -> dict:
    """License, language and datasets declared in the base model's own card, if any.

    The converted model inherits the base's license; a card that cannot be read is
    treated as silent rather than as an error, since the weights are what we convert.
    """
    from huggingface_hub import metadata_load

    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        meta = metadata_load(readme) or {}
    except Exception:  # noqa: BLE001 - malformed YAML in someone else's card
        return {}
    found = {}
    for key in ("license", "language", "datasets"):
        value = meta.get(key)
        if isinstance(value, str):
            value = [value] if key != "license" else value
        if value:
            found[key] = value
    return found
