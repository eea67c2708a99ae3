"""Finding a checkpoint that ``--resume`` can trust.

The Trainer writes ``checkpoint-N/`` in place, ``trainer_state.json`` last.  A run killed
while writing leaves a folder that looks like a checkpoint but is not: resuming from it
fails or, worse, resumes from half-written weights.  A checkpoint counts only when its
state file parses, its weights' header reads and its optimizer and scheduler archives are
whole; broken ones are moved aside (never deleted: they may hold what someone wants to
inspect).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
REQUIRED = ("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def checkpoint_is_complete(folder: Path) -> bool:
    from safetensors import safe_open

    if not all((folder / name).is_file() for name in REQUIRED):
        return False
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        with safe_open(str(folder / "model.safetensors"), "pt") as fh:
            keys = list(fh.keys())
        # torch.save writes zip archives whose directory comes last: a cut file has none.
        for name in ("optimizer.pt", "scheduler.pt"):
            with zipfile.ZipFile(folder / name) as archive:
                archive.namelist()
    except Exception:  # noqa: BLE001 - unreadable means incomplete
        return False
    return bool(keys) and isinstance(state, dict) and "global_step" in state


def latest_complete_checkpoint(root: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` under ``root``; incomplete newer ones are set aside."""
    if not root.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, folder in found:
        if checkpoint_is_complete(folder):
            return folder
        _set_aside(folder)
    return None


def _set_aside(folder: Path) -> None:
    n = 0
    while (target := folder.with_name(f"{folder.name}.incomplete{'-' + str(n) if n else ''}")).exists():
        n += 1
    folder.rename(target)
