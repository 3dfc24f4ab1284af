"""A real nginx on 127.0.0.1 with WebDAV PUT/DELETE, for tests that need an HTTP artifact store.

Usage::

    from helpers_nginx import nginx, nginx_token, start_nginx   # pytest fixtures + factory

    def test_x(nginx):            # NginxServer: .url, .root (served dir), .access_log, .requests()
        ...

``start_nginx(directory, token=None)`` is a context manager for other scopes.  With a token,
every request without ``Authorization: Bearer <token>`` gets 401.  The fixtures skip (with the
reason) only when nginx is not installed.  nginx is started and stopped through
``hermitbuild.runner.run`` (it daemonises; stopping waits for the master to exit).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from hermitbuild.runner import run

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str | None:
    for cand in NGINX_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("nginx")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class NginxServer:
    binary: str
    prefix: Path  # nginx -p (config, logs, temp dirs)
    root: Path  # the served (and PUT-able) directory
    port: int
    token: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cache"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def _read_log(self) -> list[tuple[str, str, int]]:
        out = []
        if self.access_log.exists():
            for line in self.access_log.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    out.append((parts[0], parts[1], int(parts[2])))
        return out

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, uri, status) of every request so far.

        nginx writes a request's log line just after sending the response, so a client can be
        faster than the log: wait until the log has been stable for 100 ms (at most 3 s).
        """
        last = self._read_log()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self._read_log()
            if now == last:
                break
            last = now
        return last

    def methods(self) -> list[str]:
        return [m for m, _, _ in self.requests()]

    def stored(self, name: str) -> Path:
        """Where nginx keeps ``<url>/<name>`` on disk."""
        return self.root / "cache" / name


def _config(prefix: Path, root: Path, port: int, token: str | None) -> str:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    auth = (f'            if ($http_authorization != "Bearer {token}") {{ return 401; }}\n'
            if token else "")
    return f"""{user}worker_processes 1;
daemon on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format hb '$request_method $uri $status';
    access_log {prefix}/access.log hb;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /cache/ {{
{auth}            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
        }}
    }}
}}
"""


def _wait_port(port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def start_nginx(directory: Path, token: str | None = None) -> Iterator[NginxServer]:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    prefix = Path(directory) / "nginx"
    root = Path(directory) / "www"
    (prefix / "tmp").mkdir(parents=True)
    (root / "cache").mkdir(parents=True)
    port = free_port()
    server = NginxServer(binary, prefix, root, port, token)
    server.conf.write_text(_config(prefix, root, port, token))
    base = [binary, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(server.conf)]
    run(base, capture=True, timeout=30)
    try:
        if not _wait_port(port):
            raise RuntimeError(f"nginx did not listen on {port}: {(prefix / 'error.log').read_text()}")
        yield server
    finally:
        pid_file = prefix / "nginx.pid"
        pid = int(pid_file.read_text().strip()) if pid_file.exists() else None
        run([*base, "-s", "stop"], capture=True, check=False)
        deadline = time.monotonic() + 10
        while pid is not None and _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxServer]:
    """A fresh nginx WebDAV store without authentication."""
    with start_nginx(tmp_path / "srv") as server:
        yield server


@pytest.fixture
def nginx_token(tmp_path: Path) -> Iterator[NginxServer]:
    """A fresh nginx WebDAV store that demands ``Authorization: Bearer s3cret-token``."""
    with start_nginx(tmp_path / "srv-auth", token="s3cret-token") as server:
        yield server
