"""A real OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1, with htpasswd auth.

Usage::

    from helpers_registry import registry, start_registry   # pytest fixture + factory

    def test_x(registry):      # Registry: .url(repo), .user, .password, .blob_file(digest), .stop()
        ...

Every request needs the credentials (reading too).  The fixture skips (with the reason) only
when docker-registry or htpasswd is not installed (``scripts/setup --tests`` installs both).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from hermitbuild.runner import output

from helpers_nginx import _wait_port, free_port

USER, PASSWORD = "hermit", "s3cret-pw"


@dataclass
class Registry:
    root: Path
    port: int
    proc: subprocess.Popen
    user: str = USER
    password: str = PASSWORD

    def url(self, repo: str = "hermit/cache", plain_http: bool = True) -> str:
        return f"oci{'+http' if plain_http else ''}://127.0.0.1:{self.port}/{repo}"

    @property
    def token(self) -> str:
        return f"{self.user}:{self.password}"

    def blob_file(self, digest: str) -> Path:
        """Where the registry stores the blob ``sha256:<hex>`` on disk."""
        hexd = digest.split(":", 1)[1]
        return self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def log(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")


@contextlib.contextmanager
def start_registry(directory: Path) -> Iterator[Registry]:
    binary, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    if binary is None or htpasswd is None:
        pytest.skip("docker-registry / htpasswd are not installed (scripts/setup --tests installs them)")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(output([htpasswd, "-Bbn", USER, PASSWORD]))
    port = free_port()
    (root / "config.yml").write_text(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: hermitbuild-tests
auth:
  htpasswd:
    realm: hermitbuild-tests
    path: {root / 'htpasswd'}
""")
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reg = Registry(root, port, proc)
    try:
        if not _wait_port(port):
            raise RuntimeError(f"docker-registry did not listen on {port}: {reg.log}")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "registry") as reg:
        time.sleep(0.05)
        yield reg
