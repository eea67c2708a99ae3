"""Publishing a model folder to the Hugging Face Hub in one atomic commit."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from longzoo.cards.render import render_card
from longzoo.errors import LongzooError
from longzoo.manifest import MANIFEST, read_manifest, record_step
from longzoo.progress import Steps
from longzoo.records import PushRecord
from longzoo.weights import require_finite_files

# Training leftovers and caches never belong in a published model.  Patterns are
# fnmatch-style, as upload_folder applies them ("*" also crosses "/").
_TRAINING_FILES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "training_args.bin", "trainer_state.json")
IGNORE = [
    *_TRAINING_FILES,
    *(f"*/{name}" for name in _TRAINING_FILES),
    "checkpoint-*",
    "checkpoints/*",  # longzoo pretrain's Trainer checkpoints
    "cache/*",  # and its tokenized corpus
    "runs/*",
    "*__pycache__*",
    ".*",
    "*/.*",
    "*.partial/*",
]
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_TRANSIENT = {429, 500, 502, 503, 504}


@dataclass
class PushResult:
    """What was (or, with ``dry_run``, would be) uploaded, and where."""

    repo_url: str
    files: list[tuple[str, int]]  # (path in repo, size in bytes)
    commit_url: str | None = None
    pr_url: str | None = None


def files_to_upload(folder: Path) -> list[tuple[str, int]]:
    """The files ``push`` sends, after leaving out checkpoints, optimizer state and caches."""
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    kept = filter_repo_objects(paths, ignore_patterns=IGNORE)
    return [(path, (folder / path).stat().st_size) for path in kept]


def check_publishable(folder: Path, force: bool) -> None:
    """Refuse folders that would publish a broken or undocumented model."""
    if not folder.is_dir():
        raise LongzooError(f"{folder}: no such folder")
    if not any((folder / name).is_file() for name in _WEIGHTS):
        raise LongzooError(f"{folder}: no model.safetensors; nothing to publish")
    if not (folder / "config.json").is_file():
        raise LongzooError(f"{folder}: no config.json")
    require_finite_files(folder)  # even with --force: NaN weights help nobody
    if force:
        return
    if not (folder / MANIFEST).is_file():
        raise LongzooError(f"{folder}: no longzoo.json, so no proof of a correct conversion (--force to push anyway)")
    record = read_manifest(folder).convert
    parity = record.parity if record else None
    if parity is None:
        raise LongzooError(f"{folder}: the conversion was not verified (--no-verify); --force to push anyway")
    if not parity.passed:
        raise LongzooError(f"{folder}: the conversion failed its parity check; --force to push anyway")


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    steps: Steps | None = None,
) -> PushResult:
    """Publish ``folder`` as ``repo_id``: ``create_repo(exist_ok=True)`` + one ``upload_folder``.

    The card is re-rendered first with ``repo_id`` (so its snippet names the real
    repository) and its metadata validated offline, before any byte is sent.  The token
    comes from ``token``, ``HF_TOKEN`` or the stored login; it is never printed or stored.
    File transfers are retried by huggingface_hub itself (exponential backoff, ``Retry-After``);
    the commit is not, as the library decides (a commit whose answer was lost would be made
    twice).  It is atomic, so a failure publishes nothing, and running again sends only what
    the Hub does not hold yet.
    """
    from huggingface_hub import HfApi

    import longzoo

    steps = steps or Steps()
    folder = Path(folder).expanduser()
    check_repo_id(repo_id)
    check_publishable(folder, force)
    if (folder / MANIFEST).is_file():
        # Re-rendered so the snippet names the real repository, and validated offline:
        # the Hub would reject bad metadata only after the whole upload.
        render_card(folder, repo_id=repo_id, strict=not force, write=not dry_run)

    files = files_to_upload(folder)
    api = HfApi(endpoint=endpoint, token=token, library_name="longzoo", library_version=longzoo.__version__)
    if dry_run:
        return PushResult(f"{api.endpoint.rstrip('/')}/{repo_id}", files)
    message = commit_message or f"Upload {folder.resolve().name} with longzoo {longzoo.__version__}"
    with _hub_errors(repo_id, token or _stored_token()):
        with steps.step(f"Creating {repo_id}"):
            repo_url = str(api.create_repo(repo_id, private=private, exist_ok=True))
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
        with steps.step(f"Uploading {len(files)} files in one commit"):
            commit = api.upload_folder(
                folder_path=folder,
                repo_id=repo_id,
                revision=revision,
                create_pr=create_pr,
                commit_message=message,
                ignore_patterns=IGNORE,
            )
    record_step(folder, "push", PushRecord(repo_id=repo_id, revision=revision, commit=commit.oid, pr_url=commit.pr_url))
    return PushResult(repo_url, files, commit.commit_url, commit.pr_url)


def check_repo_id(repo_id: str, option: str = "--repo-id") -> None:
    """Refuse, before any work, a repository id the Hub would refuse."""
    if not _valid_repo_id(repo_id):
        raise LongzooError(f"{option} must look like OWNER/NAME, got {repo_id!r}")


def _valid_repo_id(repo_id: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


@contextlib.contextmanager
def _hub_errors(repo_id: str, secret: str | None):
    """The Hub's failures as one line each, never showing the token."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise LongzooError(_scrub(_http_message(status, repo_id, exc), secret)) from None
    except (httpx2.TransportError, ConnectionError) as exc:
        raise LongzooError(
            _scrub(f"cannot reach the Hub ({type(exc).__name__}: {exc}); check HF_ENDPOINT and your connection", secret)
        ) from None
    except ValueError as exc:  # the Hub's YAML validation
        raise LongzooError(_scrub(f"the Hub rejected the upload: {exc}".replace("\n", " "), secret)) from None


def _http_message(status: int | None, repo_id: str, exc: Exception) -> str:
    server = getattr(exc, "server_message", None) or ""
    detail = f" ({server.strip()})" if server.strip() else ""
    messages = {
        401: "the Hub did not accept your credentials: set HF_TOKEN or run `hf auth login`",
        403: f"your token may not write to {repo_id}: use a token with write access to that owner",
        404: f"{repo_id} or its branch was not found (or is private to another account)",
        409: f"conflict while writing {repo_id}: the branch moved or a pull request is open; retry",
        413: "the Hub refused a file as too large; shard the weights or use a plan that allows it",
    }
    if status in messages:
        return messages[status] + detail
    if status in _TRANSIENT:
        return f"the Hub failed (HTTP {status}); nothing was published: run the same command again{detail}"
    return f"the Hub answered HTTP {status}{detail}"


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
