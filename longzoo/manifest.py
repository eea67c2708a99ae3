"""``longzoo.json``: the one record of how a model folder was made.

Each step (convert, pretrain, eval, finetune) adds its own section and a line to
``history``; the model card is rendered from this file and nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from longzoo.errors import LongzooError
from longzoo.outputs import write_text_atomic

MANIFEST = "longzoo.json"
FORMAT = 1


def read_manifest(folder: str | Path) -> dict:
    """The manifest of ``folder``; an empty one if the folder has none yet."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, "history": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LongzooError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise LongzooError(f"{path}: not a longzoo manifest")
    manifest.setdefault("history", [])
    return manifest


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
    """Write atomically: a reader never sees half a manifest."""
    write_text_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
