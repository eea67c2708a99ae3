"""``longzoo.json``: the one record of how a model folder was made.

Each step (convert, pretrain, eval, finetune) adds its own section and a line to
``history``; the model card is rendered from this file and nothing else.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath

from longzoo.errors import LongzooError
from longzoo.outputs import MANIFEST, write_text_atomic

FORMAT = 1


def read_manifest(folder: str | Path) -> dict:
    """The manifest of ``folder``; an empty one if the folder has none yet."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "history": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise LongzooError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(manifest, dict):
        raise LongzooError(f"{path}: not a longzoo manifest")
    manifest.setdefault("history", [])
    _check_shape(manifest, path)
    return manifest


_SECTIONS = ("convert", "pretrain", "finetune", "eval", "card")


def _check_shape(manifest: dict, path: Path) -> None:
    """The sections longzoo reads are objects and the history a list of them (a hand edit can break either)."""
    history = manifest["history"]
    bad = [name for name in _SECTIONS if manifest.get(name) is not None and not isinstance(manifest[name], dict)]
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        bad.append("history")
    if bad:
        raise LongzooError(
            f"{path}: a record is missing or malformed ({', '.join(bad)}); restore the file or run the step again"
        )


def record_step(folder: str | Path, step: str, record: dict) -> dict:
    """Store ``record`` as section ``step`` of the manifest and log it in ``history``."""
    manifest = read_manifest(folder)
    manifest["format"] = FORMAT
    manifest[step] = record
    manifest["history"].append(history_entry(step))
    write_manifest(folder, manifest)
    return manifest


def history_entry(step: str) -> dict:
    """One ``history`` line: the step and when it finished (UTC)."""
    return {"step": step, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_manifest(folder: str | Path, manifest: dict) -> None:
    """Write atomically: a reader never sees half a manifest, nor a NaN passed off as a number."""
    bad = _non_finite_field(manifest)
    if bad is not None:
        raise LongzooError(f"{Path(folder) / MANIFEST}: {bad} is not a finite number; nothing was recorded")
    text = json.dumps(without_local_paths(manifest), indent=2, ensure_ascii=False)
    write_text_atomic(Path(folder) / MANIFEST, text + "\n")


_ABSOLUTE = re.compile(r"^(/|~/|[A-Za-z]:[\\/])")


def without_local_paths(value):
    """``value`` with every absolute local path replaced by its last component.

    A manifest travels with the model to the Hub: a user's home folder or virtualenv
    has no place in it, and means nothing on another machine anyway.
    """
    if isinstance(value, str):
        return PureWindowsPath(value).name if _ABSOLUTE.match(value) else value
    if isinstance(value, dict):
        return {key: without_local_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_local_paths(item) for item in value]
    return value


def _non_finite_field(value, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in ``value`` (nested dicts and lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "a value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite_field(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None
