"""Shared helpers for tests that build in real podman containers.

- :data:`BASE_IMAGE` is the locally created Debian base image the tests use
  (made once with :func:`hermitbuild.container.make_base_image`, i.e. debootstrap +
  ``podman import``, the same code path as ``doit base_image``, when missing).
- :data:`RUNTIME_OPTIONS`: the podman ``run`` options this kind of host needs
  (override with ``HERMITBUILD_TEST_RUNTIME_OPTIONS``, a shell-like line).
- :func:`podman_settings` makes Settings for a test: runtime podman, those options,
  the base image, every writable directory under the given tmp dir.
- :class:`FixtureWorld` builds the fixture recipe set's world in a tmp dir: the
  libgreet tarball (autoreconf'd on the host) served by a real HTTP server on
  127.0.0.1, the greeter git repository, and a root directory with ``recipes/``
  (filled-in templates), ``patches/`` and ``containers/`` (a copy of the
  repository's, so the image tags are the same as in the real build).

Use ``pytest.mark.podman`` on tests that need these, plus :func:`require_podman`.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Iterable

from hermitbuild.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BASE_IMAGE = "localhost/hermitbuild-base:bookworm"
RUNTIME_OPTIONS: tuple[str, ...] = tuple(shlex.split(os.environ.get(
    "HERMITBUILD_TEST_RUNTIME_OPTIONS",
    "--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096")))
GREETER_COMMIT_DATE = 1710000000


@functools.lru_cache(maxsize=1)
def podman_problem() -> str | None:
    """Why podman cannot be used here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/setup installs it)"
    try:
        subprocess.run(["podman", "info"], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"podman does not work here: {exc}"
    return None


def require_podman() -> None:
    import pytest

    problem = podman_problem()
    if problem:
        pytest.fail(problem + " - the podman tests are part of the suite; install podman and runc")


def podman_settings(root: Path, tmp: Path, **changes) -> Settings:
    base = dict(root=root, prefix=tmp / "prefix", build_dir=tmp / "build", cache_dir=tmp / "cache",
                runtime="podman", runtime_options=RUNTIME_OPTIONS, base_image=BASE_IMAGE, jobs=2)
    base.update(changes)
    return Settings(**base)


def ensure_base_image(tmp: Path) -> str:
    """Create the base image once (debootstrap + import) unless it exists; return its name."""
    from hermitbuild import container

    settings = podman_settings(ROOT, tmp)
    if not container.base_image_exists(settings):
        container.make_base_image(settings)
    return BASE_IMAGE


# --------------------------------------------------------------------------- HTTP server

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


class HttpServer:
    """A real HTTP server on 127.0.0.1 serving ``directory`` (started on construction)."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def host_ip() -> str:
    """A non-loopback address of this host (for 'can the container reach the host' checks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent (UDP connect)
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


# --------------------------------------------------------------------------- the fixture world

def _run(argv: list[str], cwd: Path, env: dict | None = None) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout


def make_libgreet_tarball(dest_dir: Path) -> Path:
    """libgreet-1.0.tar.gz: the fixture sources plus a host-generated configure (autoreconf -i)."""
    work = dest_dir / "libgreet-src"
    tree = work / "libgreet-1.0"
    shutil.copytree(FIXTURES / "src" / "libgreet", tree)
    _run(["autoreconf", "-i"], tree)
    shutil.rmtree(tree / "autom4te.cache", ignore_errors=True)
    tarball = dest_dir / "libgreet-1.0.tar.gz"
    _run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-czf", str(tarball),
          "libgreet-1.0"], work)
    shutil.rmtree(work)
    return tarball


def make_greeter_repo(dest: Path) -> str:
    """A git repository with the greeter sources in one commit (fixed date); returns the commit."""
    shutil.copytree(FIXTURES / "src" / "greeter", dest)
    env = {"GIT_AUTHOR_NAME": "Fixture", "GIT_AUTHOR_EMAIL": "fixture@example.org",
           "GIT_COMMITTER_NAME": "Fixture", "GIT_COMMITTER_EMAIL": "fixture@example.org",
           "GIT_AUTHOR_DATE": f"@{GREETER_COMMIT_DATE} +0000",
           "GIT_COMMITTER_DATE": f"@{GREETER_COMMIT_DATE} +0000"}
    _run(["git", "init", "-q", "-b", "main"], dest, env)
    _run(["git", "add", "."], dest, env)
    _run(["git", "commit", "-q", "-m", "greeter 0.1"], dest, env)
    return _run(["git", "rev-parse", "HEAD"], dest, env).strip()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FixtureWorld:
    """Sources, servers and a repository root for the fixture recipe set (see the module doc)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.served = base / "served"
        self.served.mkdir(parents=True)
        self.tarball = make_libgreet_tarball(self.served)
        self.http = HttpServer(self.served)
        self.greeter_repo = base / "repos" / "greeter"
        self.greeter_commit = make_greeter_repo(self.greeter_repo)
        self.values = {
            "libgreet": {"@URL@": self.http.url(self.tarball.name), "@SHA256@": sha256_of(self.tarball)},
            "greeter": {"@URL@": str(self.greeter_repo), "@COMMIT@": self.greeter_commit},
        }

    def make_root(self, name: str, extra: Iterable[str] = (), values: dict | None = None) -> Path:
        """A repository root with the fixture recipes (plus ``extra`` ones from recipes-extra)."""
        root = self.base / name
        (root / "recipes").mkdir(parents=True)
        shutil.copytree(FIXTURES / "patches", root / "patches")
        shutil.copytree(ROOT / "containers", root / "containers")
        templates = sorted((FIXTURES / "recipes").glob("*.yaml.in"))
        templates += [FIXTURES / "recipes-extra" / f"{e}.yaml.in" for e in extra]
        for t in templates:
            recipe = t.name[:-len(".yaml.in")]
            text = t.read_text(encoding="utf-8")
            for k, v in {**self.values.get(recipe, {}), **(values or {}).get(recipe, {})}.items():
                text = text.replace(k, v)
            (root / "recipes" / f"{recipe}.yaml").write_text(text, encoding="utf-8")
        return root

    def close(self) -> None:
        self.http.close()


DODO = '''\
"""doit entry point for a fixture world (written by tests/helpers_podman.py): the real
hermitbuild task wiring, with settings rooted here instead of the repository."""
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from pathlib import Path
from helpers_podman import podman_settings
from hermitbuild import cli, tasks

_settings = podman_settings(Path(__file__).resolve().parent, Path({ws!r}))
cli.setup_logging()
cli.set_context(_settings)
DOIT_CONFIG = tasks.doit_config(_settings)
task_containers = tasks.task_containers
task_download = tasks.task_download
task_prepare = tasks.task_prepare
task_build = tasks.task_build
task_toolchain = tasks.task_toolchain
'''


def write_dodo(root: Path, workspace: Path) -> Path:
    """A dodo.py in a fixture root running the real tasks with :func:`podman_settings`(root, workspace)."""
    path = root / "dodo.py"
    path.write_text(DODO.format(root=str(ROOT), tests=str(ROOT / "tests"), ws=str(workspace)))
    return path


def run_doit(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout)
