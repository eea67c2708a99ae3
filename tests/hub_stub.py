"""A loopback stand-in for the Hugging Face Hub's download API.

It speaks the requests ``huggingface_hub.snapshot_download`` makes (repo info, tree
listing, file resolve), serving local folders as repositories, so the real client runs
end to end without the internet.  Unknown repositories get the Hub's 404 answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class HubStub:
    """Serve ``repos`` (``{"owner/name": folder}``) on 127.0.0.1; use as a context manager."""

    def __init__(self, repos: dict[str, Path]):
        self.repos = {name: Path(folder) for name, folder in repos.items()}
        self.requests: list[str] = []
        # One fixed commit per repository, derived from its name, like a real sha.
        self.commits = {name: hashlib.sha1(name.encode()).hexdigest() for name in self.repos}
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

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._route(send_body=False)

            def do_GET(self):
                self._route(send_body=True)

            def _route(self, send_body: bool):
                path = unquote(urlparse(self.path).path)
                stub.requests.append(f"{self.command} {path}")
                for pattern, action in ((_INFO, self._info), (_TREE, self._tree), (_RESOLVE, self._resolve)):
                    match = pattern.match(path)
                    if match and match.group(1) in stub.repos:
                        return action(match, send_body)
                self._send(404, json.dumps({"error": "Repository not found"}).encode(), send_body, {"X-Error-Code": "RepoNotFound"})

            def _files(self, repo: str) -> list[Path]:
                root = stub.repos[repo]
                return sorted(p for p in root.rglob("*") if p.is_file())

            def _info(self, match, send_body):
                repo = match.group(1)
                root = stub.repos[repo]
                body = {
                    "id": repo,
                    "sha": stub.commits[repo],
                    "private": False,
                    "siblings": [{"rfilename": str(p.relative_to(root))} for p in self._files(repo)],
                }
                self._send(200, json.dumps(body).encode(), send_body)

            def _tree(self, match, send_body):
                repo = match.group(1)
                root = stub.repos[repo]
                entries = [
                    {"type": "file", "oid": _blob_id(p), "size": p.stat().st_size, "path": str(p.relative_to(root))}
                    for p in self._files(repo)
                ]
                self._send(200, json.dumps(entries).encode(), send_body)

            def _resolve(self, match, send_body):
                repo, _, name = match.groups()
                file = stub.repos[repo] / name
                if not file.is_file():
                    return self._send(404, b"{}", send_body, {"X-Error-Code": "EntryNotFound"})
                headers = {"X-Repo-Commit": stub.commits[repo], "ETag": f'"{_blob_id(file)}"'}
                self._send(200, file.read_bytes(), send_body, headers)

            def _send(self, status, body, send_body, headers=None):
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

        return Handler


def _blob_id(file: Path) -> str:
    # git's blob id, as the Hub reports for regular files
    data = file.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
