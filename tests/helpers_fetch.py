"""Test helpers for fetch/unpack: a real HTTP server on 127.0.0.1 and real git repositories."""

from __future__ import annotations

import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable

from hermitbuild.runner import output
from hermitbuild.settings import Settings

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, date: int = 1500000000) -> str:
    env = dict(GIT_ENV, GIT_AUTHOR_DATE=f"{date} +0000", GIT_COMMITTER_DATE=f"{date} +0000")
    return output(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env)


def commit_files(repo: Path, files: dict[str, str], message: str, date: int = 1500000000) -> str:
    """Create ``repo`` if needed, write ``files``, commit; returns the commit id."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
    for name, text in files.items():
        p = repo / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def add_submodule(repo: Path, path: str, url: str, commit: str, date: int = 1500000100) -> str:
    """Record a submodule (gitlink + .gitmodules) without cloning it; returns the new commit."""
    gm = repo / ".gitmodules"
    old = gm.read_text() if gm.exists() else ""
    gm.write_text(old + f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n')
    git(repo, "add", ".gitmodules")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    git(repo, "commit", "-q", "-m", f"add submodule {path}", date=date)
    return git(repo, "rev-parse", "HEAD")


def make_settings(tmp: Path, **kw) -> Settings:
    return Settings(root=tmp, build_dir=tmp / "build", **kw)


class FileServer:
    """http.server on 127.0.0.1 serving in-memory files, with Range support and scripted failures.

    ``actions[path]`` is a list consumed one per request: "ok", "drop" (send half the body
    then close), "drop-early" (send 1000 bytes then close), "503", "404", "norange" (ignore
    Range, answer 200), "norange-drop", "trickle" (headers, then one byte every
    ``trickle_interval`` seconds, at most ``trickle_bytes``), "loop" (a redirect to itself).
    Every request is logged as (path, Range header or None, status).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.actions: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.bytes_sent = 0
        self.trickle_interval = 0.5
        self.trickle_bytes = 40
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def requests_for(self, prefix: str) -> list[tuple[str, str | None, int]]:
        with self.lock:
            return [r for r in self.log if r[0].startswith(prefix)]

    def _next_action(self, path: str) -> str:
        with self.lock:
            queue = self.actions.get(path)
            return queue.pop(0) if queue else "ok"

    def _record(self, path: str, rng: str | None, status: int) -> None:
        with self.lock:
            self.log.append((path, rng, status))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        rng = h.headers.get("Range")
        action = self._next_action(path)
        data = self.files.get(path)
        if data is None or action == "404":
            self._record(path, rng, 404)
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if action == "loop":
            self._record(path, rng, 302)
            h.send_response(302)
            h.send_header("Location", path)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if action == "503":
            self._record(path, rng, 503)
            h.send_response(503)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        start = 0
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and not action.startswith("norange"):
            start = int(m.group(1))
            if start >= len(data):
                self._record(path, rng, 416)
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        else:
            status = 200
        body = data[start:]
        self._record(path, rng, status)
        h.send_response(status)
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if action == "trickle":
            try:
                for i in range(min(self.trickle_bytes, len(body))):
                    h.wfile.write(body[i:i + 1])
                    h.wfile.flush()
                    time.sleep(self.trickle_interval)
            except OSError:
                pass
            h.close_connection = True
            return
        if action.endswith("drop") or action == "drop-early":
            sent = 1000 if action == "drop-early" else len(body) // 2
            with self.lock:
                self.bytes_sent += sent
            h.wfile.write(body[:sent])
            h.wfile.flush()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        with self.lock:
            self.bytes_sent += len(body)
        h.wfile.write(body)


def paths_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def names(items: Iterable[Path]) -> list[str]:
    return sorted(p.name for p in items)
