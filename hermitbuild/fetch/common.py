"""What every source kind shares: where things go, mirrors, limits, and the interface.

Contract:
- :func:`git_mirror_path` and :func:`tarball_path` say where a source's download lives
  (pure, cheap); :func:`is_local`/:func:`local_path` tell mirror URLs from directories.
- :class:`SourceFetcher` is the interface of one source kind (spack's fetch strategies):
  ``is_fetched`` (cheap: small file reads, no process, no network), ``fetch`` (make the
  pinned source present, or raise FetchError/OfflineError/ChecksumError), ``checkout``
  (put the pinned tree into a new directory) and ``commit_date``.
- :data:`RETRIES`, :data:`BACKOFF_SECONDS` and the timeouts are read at use time (tests
  shorten them on this module).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ContextManager, Protocol
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import FetchError
from ..fsutil import file_lock
from ..recipe import Source
from ..settings import Settings

RETRIES = 4  # retries of one URL after a transient error (not counting resumes that made progress)
DNS_RETRIES = 1  # a host name that does not resolve is tried again once, not RETRIES times
BACKOFF_SECONDS = 1.0  # first retry delay; doubles each time
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
MAX_RESUMES = 100  # resumes after progress, per URL (bounds a server that keeps dropping)
CHUNK = 1 << 16
PINS_FILE = "hermitbuild-pins"
VERIFIED_SUFFIX = ".verified"
USER_AGENT = f"hermitbuild/{__version__}"

SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class SourceFetcher(Protocol):
    """One kind of source (git, tarball): the four things the stages ask of it."""

    def is_fetched(self, source: Source, settings: Settings) -> bool: ...

    def fetch(self, source: Source, settings: Settings) -> Path: ...

    def checkout(self, source: Source, settings: Settings, target: Path, keep_git: bool) -> None: ...

    def commit_date(self, source: Source, settings: Settings, *, fetch: bool) -> int | None: ...


class Miss(Exception):
    """This URL does not serve the source (message: why); try the next one."""


def is_local(url: str) -> bool:
    """True for file:// URLs and plain paths (no network), False for anything else."""
    if url.startswith("file://"):
        return True
    if SCHEME_RE.match(url):
        return False
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash < 0 or colon < slash):  # scp-like user@host:path
        return False
    return True


def local_path(url: str, root: Path) -> Path:
    """The file system path of a local URL (file:// or path; relative to ``root``)."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    path = Path(url).expanduser()
    return path if path.is_absolute() else root / path


def repo_name(url: str) -> str:
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def mirror_dir_name(url: str, root: Path) -> str:
    url = url.strip().rstrip("/")
    if is_local(url):
        key = "local" + str(local_path(url, root))
    elif SCHEME_RE.match(url):
        parts = urlsplit(url)
        host = parts.hostname or "host"
        if parts.port:
            host += f"_{parts.port}"
        key = host + parts.path
    else:  # user@host:path
        host, _, path = url.partition(":")
        key = host.rpartition("@")[2] + "/" + path
    key = key.rstrip("/")
    if key.endswith(".git"):
        key = key[:-4]
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", key.replace("/", "+")).strip("+.")
    return (name or "repo") + ".git"


def git_mirror_path(url: str, settings: Settings) -> Path:
    """Where the bare mirror of ``url`` lives (cheap, pure)."""
    return settings.downloads / "git" / mirror_dir_name(url, settings.root)


def tarball_path(source: Source, settings: Settings) -> Path:
    """Where the verified tarball of ``source`` lives (cheap, pure)."""
    name = source.basename
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise FetchError(f"cannot name the download of {source.url}",
                         f"the file name {name!r} taken from the URL is not usable",
                         "set `filename:` on this source in the recipe", url=source.url)
    return settings.downloads / name


def locked(path: Path) -> ContextManager[None]:
    """An exclusive lock for ``path`` (``.locks/<name>.lock`` beside it), across processes."""
    return file_lock(path.parent / ".locks" / (path.name + ".lock"))
