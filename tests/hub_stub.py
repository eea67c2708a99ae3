"""A loopback stand-in for the Hugging Face Hub's HTTP API.

It answers the requests the real ``huggingface_hub`` client makes, so tests drive the
real client end to end without the internet:

* download (``snapshot_download`` / ``from_pretrained``): repo info, tree listing, resolve;
* upload (``create_repo``, ``create_branch``, ``upload_folder``): repo creation, YAML
  validation, preupload, the LFS batch API with a basic PUT transfer, and the NDJSON commit.

Repositories live in memory as commits of ``{path: bytes}``; a commit is applied all at
once or not at all, like the Hub's.  ``fail(kind, status, times)`` injects errors, and
with ``token`` set every write needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import yaml

_REPO = r"([^/]+/[^/]+)"
_ROUTES = [
    ("GET", re.compile(rf"^/api/models/{_REPO}/revision/(.+)$"), "info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/([^/]+)(/.*)?$"), "tree"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/([^/]+)/(.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/([^/]+)/(.+)$"), "resolve"),
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/branch/(.+)$"), "branch"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(.+)$"), "preupload"),
    ("POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$"), "lfs"),
    ("PUT", re.compile(r"^/lfs-upload/([0-9a-f]{64})$"), "lfs_put"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(.+)$"), "commit"),
]
_WRITES = {"create", "branch", "preupload", "lfs", "commit"}  # the LFS PUT goes to a presigned URL
LFS_THRESHOLD = 10_000  # bytes; larger files (the weights) take the LFS path, as on the Hub


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    pulls: list[str] = field(default_factory=list)  # commit sha of each PR

    def files(self, revision: str) -> dict[str, bytes] | None:
        if revision.startswith("refs/pr/"):
            index = int(revision.rsplit("/", 1)[1]) - 1
            return self.commits[self.pulls[index]] if 0 <= index < len(self.pulls) else None
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)

    def head(self, revision: str) -> str | None:
        sha = self.branches.get(revision, revision)
        return sha if sha in self.commits else None


class HubStub:
    """Serve in-memory repositories on 127.0.0.1; use as a context manager."""

    def __init__(self, repos: dict[str, Path] | None = None, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.auth_headers: list[str] = []
        self.user_agents: list[str] = []
        self.lfs_blobs: dict[str, bytes] = {}
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        for name, folder in (repos or {}).items():
            self.add_folder(name, Path(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> HubStub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_folder(self, name: str, folder: Path) -> None:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        repo = self.repos.setdefault(name, Repo())
        self._commit(repo, "main", files)

    def fail(self, kind: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``kind`` (a route name) with ``status``."""
        self._failures.setdefault(kind, []).extend([status] * times)

    def files(self, name: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[name].files(revision) or {})

    def _commit(self, repo: Repo, branch: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(
            json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()
            + branch.encode()
            + str(len(repo.commits)).encode()
        ).hexdigest()
        repo.commits[sha] = files
        repo.branches[branch] = sha
        return sha

    def _handler(self):  # noqa: C901 - one small HTTP router
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._dispatch()

            def do_HEAD(self):
                self._dispatch()

            def do_POST(self):
                self._dispatch()

            def do_PUT(self):
                self._dispatch()

            def _dispatch(self):
                parsed = urlparse(self.path)
                path, self.query = unquote(parsed.path), parse_qs(parsed.query)
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                stub.requests.append(f"{self.command} {path}")
                stub.auth_headers.append(self.headers.get("Authorization") or "")
                stub.user_agents.append(self.headers.get("User-Agent") or "")
                for method, pattern, kind in _ROUTES:
                    match = pattern.match(path)
                    if method == self.command and match:
                        with stub._lock:
                            pending = stub._failures.get(kind)
                            status = pending.pop(0) if pending else None
                        if status is not None:
                            return self._json(status, {"error": f"injected {status}"})
                        if (
                            kind in _WRITES
                            and stub.token
                            and self.headers.get("Authorization") != f"Bearer {stub.token}"
                        ):
                            return self._json(401, {"error": "Invalid credentials in Authorization header"})
                        return getattr(self, f"_{kind}")(*match.groups())
                self._json(404, {"error": "not found"})

            def _repo(self, name):
                repo = stub.repos.get(name)
                if repo is None:
                    self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return repo

            # -- download -------------------------------------------------
            def _info(self, name, revision):
                repo = self._repo(name)
                if repo is None:
                    return
                files = repo.files(revision)
                if files is None:
                    return self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                siblings = [{"rfilename": p} for p in sorted(files)]
                self._json(200, {"id": name, "sha": repo.head(revision), "private": repo.private, "siblings": siblings})

            def _tree(self, name, revision, _sub):
                repo = self._repo(name)
                if repo is None:
                    return
                files = repo.files(revision) or {}
                entries = [
                    {"type": "file", "oid": _blob_id(data), "size": len(data), "path": p}
                    for p, data in sorted(files.items())
                ]
                self._json(200, entries)

            def _resolve(self, name, revision, file):
                repo = self._repo(name)
                if repo is None:
                    return
                files = repo.files(revision)
                if files is None or file not in files:
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                data = files[file]
                headers = {"X-Repo-Commit": repo.head(revision) or revision, "ETag": f'"{_blob_id(data)}"'}
                self._send(200, data, "application/octet-stream", headers)

            # -- upload ---------------------------------------------------
            def _create(self):
                payload = json.loads(self.body)
                name = f"{payload.get('organization')}/{payload['name']}"
                if name in stub.repos:
                    return self._json(
                        409, {"error": "You already created this model repo", "url": f"{stub.url}/{name}"}
                    )
                stub.repos[name] = Repo(private=payload.get("visibility") == "private" or bool(payload.get("private")))
                stub.repos[name].commits["0" * 40] = {}
                stub.repos[name].branches["main"] = "0" * 40
                self._json(200, {"url": f"{stub.url}/{name}", "name": name})

            def _validate(self):
                content = json.loads(self.body).get("content", "")
                match = re.match(r"^---\n(.*?)\n---", content, re.S)
                try:
                    meta = yaml.safe_load(match.group(1)) if match else None
                except yaml.YAMLError as exc:
                    return self._json(400, {"errors": [{"message": f"invalid YAML: {exc}"}]})
                if not isinstance(meta, dict):
                    return self._json(400, {"errors": [{"message": "metadata must be a mapping"}]})
                self._json(200, {"warnings": []})

            def _branch(self, name, branch):
                repo = self._repo(name)
                if repo is None:
                    return
                if branch in repo.branches:
                    return self._json(409, {"error": "Reference already exists"})
                repo.branches[branch] = repo.branches["main"]
                self._json(200, {})

            def _preupload(self, name, _revision):
                if self._repo(name) is None:
                    return
                files = json.loads(self.body)["files"]
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["size"] > LFS_THRESHOLD else "regular",
                        "shouldIgnore": False,
                    }
                    for f in files
                ]
                self._json(200, {"files": modes})

            def _lfs(self, name):
                if self._repo(name) is None:
                    return
                objects = json.loads(self.body)["objects"]
                answer = [
                    {
                        "oid": o["oid"],
                        "size": o["size"],
                        "authenticated": True,
                        "actions": {"upload": {"href": f"{stub.url}/lfs-upload/{o['oid']}"}},
                    }
                    for o in objects
                ]
                self._json(200, {"transfer": "basic", "objects": answer, "hash_algo": "sha256"})

            def _lfs_put(self, oid):
                if hashlib.sha256(self.body).hexdigest() != oid:
                    return self._json(400, {"error": "sha256 mismatch"})
                stub.lfs_blobs[oid] = self.body
                self._json(200, {})

            def _commit(self, name, revision):
                repo = self._repo(name)
                if repo is None:
                    return
                base = repo.files(revision)
                if base is None:
                    return self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                files = dict(base)
                for line in self.body.splitlines():
                    item = json.loads(line)
                    value = item["value"]
                    if item["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        blob = stub.lfs_blobs.get(value["oid"])
                        if blob is None:
                            return self._json(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                        files[value["path"]] = blob
                    elif item["key"] in ("deletedFile", "deletedFolder"):
                        files = {
                            p: d
                            for p, d in files.items()
                            if p != value["path"] and not p.startswith(value["path"] + "/")
                        }
                if self.query.get("create_pr") == ["1"]:
                    sha = stub._commit(repo, f"__pr{len(repo.pulls)}", files)
                    del repo.branches[f"__pr{len(repo.pulls)}"]
                    repo.pulls.append(sha)
                    number = len(repo.pulls)
                    return self._json(
                        200,
                        {
                            "commitUrl": f"{stub.url}/{name}/commit/{sha}",
                            "commitOid": sha,
                            "pullRequestUrl": f"{stub.url}/{name}/discussions/{number}",
                        },
                    )
                sha = stub._commit(repo, revision, files)
                self._json(200, {"commitUrl": f"{stub.url}/{name}/commit/{sha}", "commitOid": sha})

            # -- plumbing -------------------------------------------------
            def _json(self, status, payload, headers=None):
                self._send(status, json.dumps(payload).encode(), "application/json", headers)

            def _send(self, status, body, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return Handler


def _blob_id(data: bytes) -> str:
    # git's blob id, as the Hub reports for regular files
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
