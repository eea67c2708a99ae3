"""Writing output folders without ever losing what the user owns.

The rules every command follows:

* ``--force`` replaces only a folder that is empty or that longzoo wrote (it holds a
  ``longzoo.json``, or the marker of a pretraining run); never an input of the command, a
  folder that contains one, or a folder that contains the current directory.
* A new output is built beside the target and swapped in only when complete; the previous
  output stays in place until then.  A folder that appears at the target meanwhile is
  never replaced without ``--force``.
* One run at a time per output folder (an ``flock`` on a lock file beside it).
* Staging folders are marked; those a killed run left behind are removed by the next run
  into the same place (under the lock, so never another run's).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from longzoo.errors import LongzooError

MANIFEST = "longzoo.json"
RUN_MARKER = ".longzoo-run"  # a pretraining folder in progress (no manifest yet)
_STAGING_MARKER = ".longzoo-staging"


def is_longzoo_output(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() or (folder / RUN_MARKER).is_file()


def _is_non_empty_dir(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise LongzooError(f"{path}: cannot be resolved ({exc}); choose another path") from None


def refuse_inputs(out: Path, inputs: Iterable[str | Path] = ()) -> None:
    """``out`` must not be, or contain, an input or the current directory."""
    real = _resolved(out)
    for given, what in [*((p, "an input of this command") for p in inputs), (Path.cwd(), "the current folder")]:
        path = _resolved(Path(given).expanduser())
        if path == real or real in path.parents:
            relation = "is" if path == real else "contains"
            raise LongzooError(f"{out}: {relation} {what} ({given}); choose another --out")


def check_output(out: Path, force: bool, inputs: Iterable[str | Path] = ()) -> None:
    """Refuse a file, a non-empty folder without ``force``, and anything longzoo must not replace."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise LongzooError(f"{out}: exists and is not a folder")
    refuse_inputs(out, inputs)
    if not _is_non_empty_dir(out):
        return
    if not force:
        raise LongzooError(f"{out}: folder exists and is not empty; pass --force to replace it")
    if not is_longzoo_output(out):
        raise LongzooError(
            f"{out}: holds files longzoo did not write (no {MANIFEST}); --force replaces only longzoo's own "
            "outputs: empty the folder or choose another --out"
        )


def current_umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_permissions(folder: Path) -> None:
    """Give every file the user's normal mode: some writers (mkstemp, safetensors) make them private."""
    mask = current_umask()
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the one lock of output folder ``out``; a second holder gets a one-line error."""
    path = out.parent / f".{out.name}.longzoo-lock"
    while True:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        except OSError as exc:
            raise LongzooError(f"{out}: cannot write here ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise LongzooError(
                f"{out}: another longzoo run is writing this folder; wait for it to end or choose another --out"
            ) from None
        # The previous holder unlinks the file when done; a lock on an unlinked file guards nothing.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _leftover_pattern(out: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(out.name)}\.longzoo-[A-Za-z0-9_]+\.(partial|old)$")


def clean_leftovers(out: Path) -> None:
    """Remove staging folders that a killed run into ``out`` left (only marked ones)."""
    if not out.parent.is_dir():
        return
    pattern = _leftover_pattern(out)
    for path in out.parent.iterdir():
        if pattern.match(path.name) and (path / _STAGING_MARKER).is_file():
            shutil.rmtree(path, ignore_errors=True)


def _marked_folder(out: Path, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.longzoo-", suffix=suffix, dir=out.parent))
    (folder / _STAGING_MARKER).touch()
    return folder


@contextmanager
def staged_output(out: str | Path, force: bool = False, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a fresh folder that replaces ``out`` only if the block succeeds.

    The folder sits in ``out``'s parent so the final step is a rename on one file system;
    on any error it is removed and ``out`` is left as it was.
    """
    out = Path(out).expanduser().absolute()
    inputs = list(inputs)
    check_output(out, force, inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LongzooError(f"{out}: cannot write here ({exc.strerror or exc})") from None
    with output_lock(out):
        check_output(out, force, inputs)  # again: another run may have finished meanwhile
        replacing = _is_non_empty_dir(out)
        clean_leftovers(out)
        staging = _marked_folder(out, ".partial")
        try:
            yield staging
            (staging / _STAGING_MARKER).unlink()
            normal_permissions(staging)
            _publish(staging, out, force, replacing, inputs)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _publish(staging: Path, out: Path, force: bool, replacing: bool, inputs: list) -> None:
    if _is_non_empty_dir(out) and not replacing and not force:
        raise LongzooError(f"{out}: a folder appeared there while this command ran; nothing was replaced")
    check_output(out, force, inputs)
    if not out.exists():
        os.rename(staging, out)
        return
    # Move the old folder aside first so a failed rename loses nothing.
    retired = _marked_folder(out, ".old")
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
