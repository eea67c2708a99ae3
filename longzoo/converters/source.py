"""Finding a base model (local folder or Hub id) and reading its weights safely."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from longzoo.errors import LongzooError
from longzoo.weights import first_non_finite

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"

# What a conversion needs from a Hub repository; TF/Flax/ONNX files are never fetched.
_HUB_PATTERNS = [
    "config.json",
    "longzoo.json",  # a full-attention model's form, and every model's records
    "*.safetensors",
    SAFETENSORS_INDEX,
    "tokenizer*",
    "vocab.*",
    "merges.txt",
    "*.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "README.md",
    # a sentence-transformers model: its modules and their settings (weights: *.safetensors)
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "*_*/config.json",
]


@dataclass(frozen=True)
class BaseSource:
    """Where the base model's files are and what identifies them."""

    name: str  # what the user typed
    path: Path  # local folder with config.json
    hub_id: str | None = None
    revision: str | None = None  # commit sha for Hub snapshots

    @property
    def root(self) -> Path:
        """The folder the base's files may resolve into.

        A Hub snapshot's files are links into the cache's ``blobs`` folder beside
        ``snapshots``, so for those it is the repository's cache folder.
        """
        return self.path.parents[1] if self.hub_id else self.path


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__


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


_ENDPOINT_FIX = "unset it to use https://huggingface.co, or set the http(s) URL of a Hub mirror"


def check_endpoint_variable() -> None:
    """Refuse an ``HF_ENDPOINT`` that huggingface_hub cannot even be imported with.

    huggingface_hub parses the variable when it is imported, and transformers imports
    it, so a malformed one breaks every conversion (local folders too) with a traceback.
    """
    raw = os.environ.get("HF_ENDPOINT")
    if raw is not None and not _parses(raw.rstrip("/")):
        raise LongzooError(f"HF_ENDPOINT={raw!r} is not a URL, and transformers cannot load with it; {_ENDPOINT_FIX}")


def _parses(url: str) -> bool:
    try:
        _ = urlsplit(url).port  # urlsplit refuses a bad host, .port a bad port
    except ValueError:
        return False
    return True


def hub_endpoint(repo_id: str) -> str:
    """The Hub URL ``repo_id`` would come from (``HF_ENDPOINT``), refused unless it is an http(s) URL.

    huggingface_hub only fails on a malformed endpoint deep inside a request (or even
    on import), with an error that does not mention the variable the user set.
    """
    cannot = f"{repo_id}: not a local folder, and cannot be downloaded"
    try:
        from huggingface_hub import constants
    except ValueError:  # constants.py parses HF_ENDPOINT when it is imported
        raw = os.environ.get("HF_ENDPOINT")
        raise LongzooError(f"{cannot}: HF_ENDPOINT={raw!r} is not a URL; {_ENDPOINT_FIX}") from None
    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:  # nothing is requested, so a cached model still loads
        return endpoint
    parts = urlsplit(endpoint) if _parses(endpoint) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise LongzooError(f"{cannot}: HF_ENDPOINT={endpoint!r} is not an http(s) URL; {_ENDPOINT_FIX}")
    return endpoint


# Names people (and once our own examples) use for models that the Hub holds under another id.
KNOWN_MISNOMERS = {
    "hfl/roberta-zh": "hfl/chinese-roberta-wwm-ext (hfl's BERT-architecture RoBERTa; zoo recipe roberta-zh-4096)",
    "hfl/chinese-roberta": "hfl/chinese-roberta-wwm-ext (zoo recipe roberta-zh-4096)",
    "brightmart/roberta_zh": "hfl/chinese-roberta-wwm-ext (brightmart's roberta_zh is not on the Hub)",
    "roberta-zh": "hfl/chinese-roberta-wwm-ext (zoo recipe roberta-zh-4096)",
}


def misnomer_hint(repo_id: str) -> str:
    """A "did you mean" for an id that is a known misnomer, else nothing."""
    real = KNOWN_MISNOMERS.get(repo_id.strip().lower())
    return f"; the model meant is probably {real}" if real else ""


def _download(repo_id: str, revision: str | None, allow_pickle: bool) -> BaseSource:
    endpoint = hub_endpoint(repo_id)
    from huggingface_hub import constants, snapshot_download
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
        raise LongzooError(
            f"{repo_id}: not found on the Hub (check the id, or log in if it is private){misnomer_hint(repo_id)}"
        ) from None
    except RevisionNotFoundError:
        raise LongzooError(f"{repo_id}: revision {revision!r} not found") from None
    except LocalEntryNotFoundError:
        # Offline mode and an unreachable HF_ENDPOINT end here alike; say which it was.
        if constants.HF_HUB_OFFLINE:
            where = "offline mode, HF_HUB_OFFLINE=1"
        else:
            where = f"offline, or check HF_ENDPOINT={endpoint}"
        raise LongzooError(
            f"{repo_id}: not a local folder and not in the Hub cache, and the Hub cannot be "
            f"reached ({where}); download it first or pass a folder{misnomer_hint(repo_id)}"
        ) from None
    except HFValidationError:
        raise LongzooError(f"{repo_id}: no such folder, and not a valid Hub id") from None
    except OSError as exc:  # connection refused, DNS failure, full disk
        raise LongzooError(f"{repo_id}: download failed: {one_line(exc)}") from None
    if not (path / "config.json").is_file():
        raise LongzooError(f"{repo_id}: the repository has no config.json")
    # snapshot folders are named by commit sha, which pins exactly what was converted
    return BaseSource(name=repo_id, path=path, hub_id=repo_id, revision=path.name)


def weight_files(folder: Path, allow_pickle: bool, root: Path | None = None) -> list[Path]:
    """The weight files of ``folder``: safetensors by default, pickles only on request.

    Shards named by an index must resolve inside ``root`` (default: ``folder``), and a
    safetensors index may name only safetensors shards: an index is data from whoever
    made the folder, and must not make us read (or unpickle) files from elsewhere.
    """
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (PICKLE, PICKLE_INDEX)):
        if (folder / single).is_file():
            files = [folder / single]
        elif (folder / index).is_file():
            files = _shards(folder / index, root or folder)
        else:
            continue
        if single == PICKLE and not allow_pickle:
            raise LongzooError(
                f"{folder}: only pickle weights ({single}); pickles can run code when loaded. "
                "Pass --allow-pickle to load them with torch.load(weights_only=True)"
            )
        return files
    raise LongzooError(f"{folder}: no model.safetensors or pytorch_model.bin weights found")


def _shards(index: Path, root: Path) -> list[Path]:
    files = [_shard_path(index, name, root) for name in sorted(set(_weight_map(index).values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise LongzooError(f"{index}: shard files missing: {', '.join(missing)}")
    return files


def _weight_map(index: Path) -> dict[str, str]:
    fix = "re-download the model or re-save it with save_pretrained"
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LongzooError(f"{index}: corrupt shard index ({one_line(exc)}); {fix}") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not (
        isinstance(weight_map, dict)
        and weight_map
        and all(isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items())
    ):
        problem = "weight_map must map weight names to shard file names"
        raise LongzooError(f"{index}: corrupt shard index ({problem}); {fix}")
    return weight_map


def _shard_path(index: Path, name: str, root: Path) -> Path:
    if index.name == SAFETENSORS_INDEX and not name.endswith(".safetensors"):
        raise LongzooError(
            f"{index}: names shard {name!r}, but a safetensors index may name only .safetensors files; "
            "re-save the model with save_pretrained"
        )
    path = index.parent / name
    # Lexically inside the folder, and still inside once symlinks are followed.
    inside = not Path(name).is_absolute() and os.pardir not in Path(os.path.normpath(name)).parts
    if not (inside and path.resolve().is_relative_to(root.resolve())):
        raise LongzooError(
            f"{index}: shard {name!r} lies outside the base folder; put the shards in {index.parent} "
            "and name them relative to it"
        )
    return path


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
            raise LongzooError(f"{file}: corrupt or truncated weights file ({one_line(exc)})") from None
        if not isinstance(part, dict):
            raise LongzooError(f"{file}: does not hold a state dict")
        _check_finite(file, part)
        state.update(part)
    return state


def _check_finite(file: Path, part: dict) -> None:
    """NaN or inf in a base weight would be copied into the long model without a trace."""
    import torch

    key = first_non_finite((k, t) for k, t in part.items() if isinstance(t, torch.Tensor))
    if key is not None:
        raise LongzooError(
            f"{file}: weight {key!r} holds NaN or infinite values; the checkpoint is damaged, "
            "re-download it or re-export it from a sound copy"
        )


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
