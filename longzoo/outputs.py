"""Writing an output folder all at once: build it beside the target, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longzoo.errors import LongzooError


def check_output(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``force``."""
    if out.exists() and not out.is_dir():
        raise LongzooError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise LongzooError(f"{out}: folder exists and is not empty; pass --force to replace it")


@contextmanager
def staged_output(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces ``out`` only if the block succeeds.

    The temporary folder sits in ``out``'s parent so the final step is a rename on one
    file system; on any error it is removed and ``out`` is left as it was.
    """
    out = Path(out).expanduser().absolute()
    check_output(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        # mkdtemp makes a private (0700) folder; the published folder gets normal permissions.
        staging.chmod(0o777 & ~current_umask())
    except OSError as exc:
        raise LongzooError(f"{out}: cannot write here ({exc.strerror or exc})") from None
    try:
        yield staging
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    # --force: move the old folder aside first so a failed rename loses nothing.
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, retired / "old")
    os.rename(staging, out)
    shutil.rmtree(retired, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp files are private; ours are not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
