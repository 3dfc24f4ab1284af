"""Fetching sources: git repositories (bare mirrors) and tarballs (verified downloads).

Contract:

Git sources (gitpython; gitpython runs the ``git`` program itself, every call is
logged here):

- One shared bare mirror per repository at :func:`git_mirror_path`
  (``<downloads>/git/<host+path>.git``).  It is fetched (branches and tags, then
  the pinned commit by id if it is on neither) only when the pinned commit is
  missing, so a present pin never touches the network.  Each pin gets a ref
  ``refs/hermitbuild/pins/<commit>`` so it survives upstream force-pushes and gc.
- Submodules are read from ``.gitmodules`` *at the pinned commit*, each pinned at
  the commit the parent's tree records (gitlink); relative URLs (``../lwip.git``)
  resolve against the parent's upstream URL like git does.  Every submodule gets
  its own bare mirror, recursively.
- After a successful fetch the mirror's ``hermitbuild-pins`` file (JSON lines:
  commit, committer date, submodule pins) records the pin, which is what the
  cheap :func:`is_fetched` and :func:`commit_date` read.
- :func:`checkout` clones the mirror (``--shared --no-checkout``), checks out
  exactly the pin (detached), the submodules at the parent's pins, verifies
  ``HEAD == pin`` everywhere (else :class:`~hermitbuild.errors.FetchError`),
  then drops ``.git`` (unless ``keep_git=True``; a kept ``.git`` borrows objects
  from the mirror through ``objects/info/alternates``) and moves the tree into
  ``dest/source.dest``.  Source URLs may be ``file://`` URLs or local paths.

Tarball sources (requests):

- Stored at :func:`tarball_path` (``<downloads>/<basename>``).  Streamed to
  ``<file>.part``; a dropped connection is resumed with an HTTP ``Range`` request
  (a ``206`` appends, a ``200`` starts over); transient errors (connection
  errors, timeouts, HTTP 5xx/408/429) are retried with exponential backoff
  (a host name that does not resolve only once: that is rarely transient)
  (:data:`RETRIES`, :data:`BACKOFF_SECONDS`); other HTTP errors such as 404 move
  on to the next URL.  The sha256 is verified before the rename; a mismatch
  deletes the file and, if no other URL serves the right file,
  raises :class:`~hermitbuild.errors.ChecksumError` with both digests.  When every
  URL fails, :class:`~hermitbuild.errors.FetchError` lists each URL with its
  status.  A verified file gets a ``<file>.verified`` note (sha256, size, mtime)
  so :func:`is_fetched` need not re-hash.
- Slow servers: every receive is written at once (a drop keeps what arrived); a transfer
  that moves less than ``download_min_rate`` bytes/s over a ``download_stall`` window (or
  is silent that long) is cut and retried as a failure (a trickle is not progress); a
  file not done within ``download_deadline`` stops with a FetchError naming the setting.
  A redirect loop is not retried.
- A progress bar is drawn on stderr when it is a terminal; otherwise plain log
  lines.

Mirrors and offline mode (``settings.mirrors``, ``settings.offline``):

- Mirrors are tried in order *before* upstream.  Tarballs: ``<mirror>/<basename>``.
  Git: ``<mirror>/<name>.git``, then ``<mirror>/<name>`` (``name`` = the last URL
  path component without ``.git``), and for local directories also
  ``<mirror>/git/<mirror dir name>`` (a copied ``build/downloads``).  A mirror is
  a base URL (http, https, file://) or a local directory (relative paths are
  relative to ``settings.root``).
- Offline mode never touches the network; local directories and ``file://`` are
  still used.  Anything missing raises :class:`~hermitbuild.errors.OfflineError`
  naming the file or mirror path needed and where to put it.

Cheap functions (:func:`is_fetched`, :func:`tarball_path`,
:func:`git_mirror_path`) only read small files: no network, no subprocess, no
gitpython import.  Nothing runs at import time (gitpython and requests are
imported lazily).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager
from urllib.parse import unquote, urlsplit

from . import __version__
from .errors import ChecksumError, FetchError, OfflineError
from .recipe import Recipe, Source
from .fsutil import file_lock, is_safe_relpath, sha256_file, write_atomic
from .settings import Settings, parse_duration, parse_size
from .unpack import place_tree, safe_extract

if TYPE_CHECKING:  # pragma: no cover
    import requests

logger = logging.getLogger(__name__)

__all__ = ["fetch_source", "fetch_recipe", "is_fetched", "tarball_path", "git_mirror_path",
           "checkout", "commit_date", "RETRIES", "BACKOFF_SECONDS"]

RETRIES = 4  # retries of one URL after a transient error (not counting resumes that made progress)
BACKOFF_SECONDS = 1.0  # first retry delay; doubles each time
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
MAX_RESUMES = 100  # resumes after progress, per URL (bounds a server that keeps dropping)
CHUNK = 1 << 16
PINS_FILE = "hermitbuild-pins"
VERIFIED_SUFFIX = ".verified"
USER_AGENT = f"hermitbuild/{__version__}"

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- URLs and paths

def _is_local(url: str) -> bool:
    """True for file:// URLs and plain paths (no network), False for anything else."""
    if url.startswith("file://"):
        return True
    if _SCHEME_RE.match(url):
        return False
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash < 0 or colon < slash):  # scp-like user@host:path
        return False
    return True


def _local_path(url: str, root: Path) -> Path:
    """The file system path of a local URL (file:// or path; relative to ``root``)."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    path = Path(url).expanduser()
    return path if path.is_absolute() else root / path


def _repo_name(url: str) -> str:
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def _mirror_dir_name(url: str, root: Path) -> str:
    url = url.strip().rstrip("/")
    if _is_local(url):
        key = "local" + str(_local_path(url, root))
    elif _SCHEME_RE.match(url):
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
    return settings.downloads / "git" / _mirror_dir_name(url, settings.root)


def tarball_path(source: Source, settings: Settings) -> Path:
    """Where the verified tarball of ``source`` lives (cheap, pure)."""
    name = source.basename
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise FetchError(f"cannot name the download of {source.url}",
                         f"the file name {name!r} taken from the URL is not usable",
                         "set `filename:` on this source in the recipe", url=source.url)
    return settings.downloads / name


def _resolve_submodule_url(parent: str, url: str) -> str:
    """Resolve a relative submodule URL against the parent's URL, like git."""
    if not (url.startswith("./") or url.startswith("../")):
        return url
    base = parent.rstrip("/")
    rel = url
    while True:
        if rel.startswith("./"):
            rel = rel[2:]
        elif rel.startswith("../"):
            rel = rel[3:]
            cut = max(base.rfind("/"), base.rfind(":") if not _SCHEME_RE.match(base) else -1)
            if _SCHEME_RE.match(base) and cut < base.find("://") + 3:
                cut = -1
            if cut < 0:
                raise FetchError(f"cannot resolve submodule URL {url!r}",
                                 f"it climbs above the parent URL {parent!r}",
                                 "fix .gitmodules upstream or use a mirror", url=url)
            base = base[:cut]
        else:
            break
    return f"{base}/{rel}" if rel else base


# --------------------------------------------------------------------------- small helpers

def _locked(path: Path) -> ContextManager[None]:
    """An exclusive lock for ``path`` (``.locks/<name>.lock`` beside it), across processes."""
    return file_lock(path.parent / ".locks" / (path.name + ".lock"))


def _sha256_file(path: Path) -> str:
    return sha256_file(path)[0]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class _Progress:
    """A one-line progress bar on a terminal; a few log lines otherwise."""

    def __init__(self, label: str, total: int | None, done: int) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.start_done = done
        self.tty = sys.stderr.isatty()
        self.started = self.last = time.monotonic()
        self.next_pct = 25
        logger.info("downloading %s%s%s", label, f" ({_human(total)})" if total else "",
                    f", resuming at {_human(done)}" if done else "")

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.2:
                self.last = now
                self._draw(now)
        elif self.total:
            pct = self.done * 100 // self.total
            if pct >= self.next_pct and pct < 100:
                logger.info("  %s: %d%% (%s of %s)", self.label, pct, _human(self.done),
                            _human(self.total))
                self.next_pct = (pct // 25 + 1) * 25

    def _draw(self, now: float) -> None:
        rate = (self.done - self.start_done) / max(now - self.started, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 24)
            text = f"{self.label} [{bar:<24}] {frac * 100:5.1f}% {_human(self.done)} {_human(rate)}/s"
        else:
            text = f"{self.label} {_human(self.done)} {_human(rate)}/s"
        sys.stderr.write("\r" + text[:120].ljust(80))
        sys.stderr.flush()

    def close(self, ok: bool = True) -> None:
        now = time.monotonic()
        if self.tty:
            self._draw(now)
            sys.stderr.write("\n")
            sys.stderr.flush()
        logger.info("%s %s: %s in %.1fs", "downloaded" if ok else "interrupted", self.label,
                    _human(self.done), now - self.started)


# --------------------------------------------------------------------------- tarballs

def _verified_note(path: Path) -> Path:
    return path.with_name(path.name + VERIFIED_SUFFIX)


def _tarball_ok_cheap(path: Path, sha256: str) -> bool:
    try:
        fields = _verified_note(path).read_text(encoding="utf-8").split()
        st = path.stat()
    except OSError:
        return False
    return len(fields) == 3 and fields[0] == sha256 and fields[1] == str(st.st_size) \
        and fields[2] == str(st.st_mtime_ns)


def _write_verified(path: Path, sha256: str) -> None:
    st = path.stat()
    write_atomic(_verified_note(path), f"{sha256} {st.st_size} {st.st_mtime_ns}\n")


def _tarball_candidates(source: Source, settings: Settings) -> list[str]:
    out: list[str] = []
    for mirror in settings.mirrors:
        if _is_local(mirror):
            out.append(str(_local_path(mirror, settings.root) / source.basename))
        else:
            out.append(mirror.rstrip("/") + "/" + source.basename)
    out.append(source.url)
    return out


class _Miss(Exception):
    """This URL cannot give us the file (message: why); try the next one."""


class _Transient(Exception):
    """A retryable failure (message: why)."""


DNS_RETRIES = 1  # a host name that does not resolve is tried again once, not RETRIES times
_DNS_FAILURES = ("NameResolutionError", "Name or service not known", "nodename nor servname",
                 "Temporary failure in name resolution", "No address associated with hostname")


class _Unresolved(_Transient):
    """The host name did not resolve (usually no network or no DNS): retried only DNS_RETRIES times."""


def _session() -> "requests.Session":
    import requests

    session = requests.Session()
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"^\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class _Limits:
    """How slow a download may be: ``min_rate`` bytes/s over every ``stall`` seconds, and done by
    ``deadline`` (a time.monotonic() value)."""

    stall: float
    min_rate: int
    deadline: float
    deadline_text: str

    @classmethod
    def of(cls, settings: Settings) -> "_Limits":
        seconds = parse_duration(settings.download_deadline) or 0.0
        return cls(stall=parse_duration(settings.download_stall) or 60.0,
                   min_rate=parse_size(settings.download_min_rate),
                   deadline=time.monotonic() + seconds if seconds else float("inf"),
                   deadline_text=settings.download_deadline)

    def check_deadline(self, url: str, have: int) -> None:
        if time.monotonic() > self.deadline:
            raise FetchError(f"download of {url} took longer than download_deadline ({self.deadline_text})",
                             f"{have} bytes arrived; the server is too slow or hangs",
                             "try again later, add a faster mirror (`mirrors`), or raise download_deadline "
                             "(hermitbuild.yaml or HERMITBUILD_DOWNLOAD_DEADLINE); what arrived is kept "
                             "and resumed", url=url)


class _Stalled(_Transient):
    """The transfer moved less than the minimum rate: counted as a failure, not as progress."""


def _stream_body(resp: Any, fh: Any, limits: _Limits, url: str, done: int,
                 progress: "_Progress") -> int:
    """Copy the response body to ``fh`` as it arrives (each receive is written at once, so a drop
    keeps every byte); return the bytes gained.  Raises _Stalled below the minimum rate."""
    import requests
    import urllib3

    gained = 0
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            data = resp.raw.read1(CHUNK)
        except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError,
                TimeoutError) as exc:
            raise _Transient(f"connection dropped after {done + gained} bytes ({type(exc).__name__})") \
                from None
        if not data:
            return gained
        fh.write(data)
        gained += len(data)
        window_bytes += len(data)
        progress.update(len(data))
        now = time.monotonic()
        if now - window_start >= limits.stall:
            if window_bytes < limits.min_rate * limits.stall:
                raise _Stalled(f"stalled: {window_bytes} bytes in {now - window_start:.0f}s, below "
                               f"download_min_rate ({limits.min_rate} bytes/s over download_stall)")
            window_start, window_bytes = now, 0
        limits.check_deadline(url, done + gained)


def _download(url: str, part: Path, session: "requests.Session", label: str, limits: _Limits) -> None:
    """Stream ``url`` into ``part`` (resuming what is there); raises _Miss on failure."""
    import requests

    failures = 0
    resumes = 0
    restarts = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        gained = 0
        limits.check_deadline(url, have)
        try:
            try:
                resp = session.get(url, stream=True, headers=headers,
                                   timeout=(CONNECT_TIMEOUT, min(READ_TIMEOUT, limits.stall)),
                                   allow_redirects=True)
            except requests.TooManyRedirects as exc:  # a redirect loop does not heal by retrying
                raise _Miss(f"redirect loop ({exc})") from None
            except requests.RequestException as exc:
                kind = _Unresolved if any(m in str(exc) for m in _DNS_FAILURES) else _Transient
                raise kind(f"{type(exc).__name__}: {exc}") from None
            with resp:
                status = resp.status_code
                if status == 416 and have:
                    m = re.match(r"^\s*bytes\s+\*/(\d+)", resp.headers.get("Content-Range") or "")
                    if m and int(m.group(1)) == have:
                        logger.info("%s: the partial download %s is already complete", url, part)
                        return
                    restarts += 1
                    logger.warning("%s: server refused to resume at byte %d (HTTP 416); starting over",
                                   url, have)
                    part.unlink(missing_ok=True)
                    if restarts > 2:
                        raise _Miss("HTTP 416 Range Not Satisfiable")
                    continue
                if status >= 500 or status in (408, 425, 429):
                    raise _Transient(f"HTTP {status} {resp.reason}")
                if status not in (200, 206):
                    raise _Miss(f"HTTP {status} {resp.reason}")
                mode = "wb"
                done = 0
                if status == 206:
                    start = _content_range_start(resp.headers.get("Content-Range"))
                    if not have or start != have:
                        restarts += 1
                        logger.warning("%s: unexpected partial answer (Content-Range %r); starting over",
                                       url, resp.headers.get("Content-Range"))
                        part.unlink(missing_ok=True)
                        if restarts > 2:
                            raise _Miss("HTTP 206 with a wrong Content-Range")
                        continue
                    mode, done = "ab", have
                    logger.info("%s: resuming at byte %d (HTTP 206)", url, have)
                elif have:
                    logger.info("%s: server ignored the Range request (HTTP 200); starting over", url)
                length = resp.headers.get("Content-Length")
                total = done + int(length) if length and length.isdigit() else None
                progress = _Progress(label, total, done)
                before = part.stat().st_size if mode == "ab" and part.exists() else 0
                try:
                    with open(part, mode) as fh:
                        gained = _stream_body(resp, fh, limits, url, done, progress)
                except _Transient:
                    progress.close(ok=False)
                    gained = max(0, (part.stat().st_size if part.exists() else 0) - before)
                    raise
                progress.close()
                if total is not None and done + gained < total:
                    raise _Transient(f"connection closed after {done + gained} of {total} bytes")
                return
        except _Transient as exc:
            if gained and not isinstance(exc, _Stalled):
                resumes += 1
                failures = 0
                if resumes > MAX_RESUMES:
                    raise _Miss(f"gave up after {resumes} interrupted transfers: {exc}") from None
            else:
                failures += 1
                if failures > (DNS_RETRIES if isinstance(exc, _Unresolved) else RETRIES):
                    raise _Miss(f"gave up after {failures} attempts: {exc}") from None
            delay = BACKOFF_SECONDS * 2 ** max(failures - 1, 0) if not gained else 0.0
            logger.warning("%s: %s; %s in %.1fs", url, exc,
                           "resuming with a Range request" if part.exists() and part.stat().st_size
                           else "retrying", delay)
            if delay:
                time.sleep(delay)


def _copy_local(src: Path, part: Path, label: str) -> None:
    if not src.is_file():
        raise _Miss("not present")
    logger.info("copying %s from %s", label, src)
    try:
        shutil.copyfile(src, part)
    except OSError as exc:
        raise _Miss(f"cannot copy: {exc.strerror or exc}") from None


def _ensure_tarball(source: Source, settings: Settings) -> Path:
    if not _SHA256_RE.match(source.sha256 or ""):
        raise FetchError(f"tarball {source.url} has no valid sha256 pin",
                         f"sha256 is {source.sha256!r}", "add `sha256: <64 hex digits>` to the source",
                         url=source.url)
    path = tarball_path(source, settings)
    if _tarball_ok_cheap(path, source.sha256):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if _tarball_ok_cheap(path, source.sha256):
            return path
        if path.exists():
            actual = _sha256_file(path)
            if actual == source.sha256:
                _write_verified(path, source.sha256)
                return path
            logger.warning("%s has sha256 %s, not the pinned %s; fetching it again", path, actual,
                           source.sha256)
            path.unlink()
            _verified_note(path).unlink(missing_ok=True)
        part = path.with_name(path.name + ".part")
        limits = _Limits.of(settings)
        tries: list[str] = []
        mismatch: ChecksumError | None = None
        session = None
        try:
            for cand in _tarball_candidates(source, settings):
                local = _is_local(cand)
                if settings.offline and not local:
                    tries.append(f"{cand}: skipped (offline mode)")
                    continue
                for attempt in (1, 2):
                    resumed = part.exists() and part.stat().st_size > 0 and not local
                    try:
                        if local:
                            _copy_local(_local_path(cand, settings.root), part, path.name)
                        else:
                            if session is None:
                                session = _session()
                            _download(cand, part, session, path.name, limits)
                    except _Miss as exc:
                        tries.append(f"{cand}: {exc}")
                        break
                    except OSError as exc:  # our side: disk full, permissions
                        raise FetchError(f"cannot write {part}", exc.strerror or str(exc),
                                         f"check free space and permissions of {part.parent}",
                                         url=cand) from None
                    actual = _sha256_file(part)
                    if actual == source.sha256:
                        os.replace(part, path)
                        _write_verified(path, source.sha256)
                        logger.info("verified %s (sha256 %s) from %s", path, actual, cand)
                        return path
                    part.unlink(missing_ok=True)
                    if resumed and attempt == 1:
                        logger.warning("%s: wrong sha256 after resuming an old partial download; "
                                       "downloading it again from the start", cand)
                        continue
                    logger.warning("%s: wrong sha256 %s (expected %s)", cand, actual, source.sha256)
                    tries.append(f"{cand}: wrong sha256 {actual}")
                    mismatch = mismatch or ChecksumError(path, source.sha256, actual, cand)
                    break
        finally:
            if session is not None:
                session.close()
        # keep a .part only if it may be resumed later (never one with a wrong checksum)
        if mismatch is not None:
            part.unlink(missing_ok=True)
            raise mismatch
        if settings.offline:
            looked = [t for t in tries if not t.endswith("(offline mode)")]
            raise OfflineError(f"{source.basename} (sha256 {source.sha256})", path,
                               source.url + ("; also tried:\n    " + "\n    ".join(looked)
                                             if looked else ""))
        raise FetchError(
            f"could not download {source.basename}",
            "every URL failed:\n    " + "\n    ".join(tries),
            f"check the network, the URL and settings.mirrors; or download the file yourself, check its "
            f"sha256 is {source.sha256} and put it at {path}",
            url=source.url, tried=tries)


# --------------------------------------------------------------------------- git

def _gitmod() -> Any:
    import git  # gitpython: imported lazily (it runs `git version` on import)

    return git


def _read_pins(mirror: Path) -> dict[str, dict]:
    try:
        text = (mirror / PINS_FILE).read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, dict] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            out[str(entry["commit"])] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _record_pin(mirror: Path, commit: str, date: int, subs: list[list[str]] | None) -> None:
    pins = _read_pins(mirror)
    old = pins.get(commit) or {}
    pins[commit] = {"commit": commit, "date": date,
                    "submodules": subs if subs is not None else old.get("submodules")}
    write_atomic(mirror / PINS_FILE,
                 "".join(json.dumps(e, sort_keys=True) + "\n" for e in pins.values()))


def _git_pin_known(url: str, commit: str, submodules: bool, settings: Settings,
                   seen: frozenset = frozenset()) -> bool:
    mirror = git_mirror_path(url, settings)
    if not (mirror / "objects").is_dir():
        return False
    entry = _read_pins(mirror).get(commit)
    if entry is None:
        return False
    if not submodules:
        return True
    subs = entry.get("submodules")
    if subs is None:
        return False
    seen = seen | {(url, commit)}
    return all(_git_pin_known(u, c, True, settings, seen) for _p, u, c in subs if (u, c) not in seen)


def _stderr_tail(exc: Any) -> str:
    """The last meaningful line of a git error (gitpython wraps stderr as "stderr: '...'")."""
    raw = (getattr(exc, "stderr", "") or "").strip()
    if raw.startswith("stderr:"):
        raw = raw[len("stderr:"):].strip()
    lines = [ln.strip().strip("'").strip() for ln in raw.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else (str(exc).strip().splitlines() or ["unknown error"])[0]


def _has_commit(repo: Any, commit: str) -> bool:
    G = _gitmod()
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}")
        return True
    except G.GitCommandError:
        return False


def _open_or_init_mirror(mirror: Path, url: str) -> Any:
    G = _gitmod()
    try:
        if (mirror / "objects").is_dir() and (mirror / "HEAD").is_file():
            return G.Repo(str(mirror))
        logger.info("creating bare mirror %s for %s", mirror, url)
        mirror.mkdir(parents=True, exist_ok=True)
        repo = G.Repo.init(str(mirror), bare=True)
        repo.git.config("hermitbuild.url", url)
        return repo
    except (G.InvalidGitRepositoryError, G.GitCommandError, OSError) as exc:
        raise FetchError(f"the git mirror {mirror} is unusable", _stderr_tail(exc),
                         f"delete {mirror} and fetch again", url=url, mirror=str(mirror)) from None


def _git_candidates(url: str, settings: Settings) -> list[str]:
    name = _repo_name(url)
    out: list[str] = []
    for mirror in settings.mirrors:
        if _is_local(mirror):
            base = _local_path(mirror, settings.root)
            out += [str(base / f"{name}.git"), str(base / name),
                    str(base / "git" / _mirror_dir_name(url, settings.root))]
        else:
            base_url = mirror.rstrip("/")
            out += [f"{base_url}/{name}.git", f"{base_url}/{name}"]
    out.append(url)
    return out


_PERMANENT_GIT_ERRORS = ("not found", "does not appear to be a git repository", "404",
                        "not our ref", "couldn't find remote ref", "authentication failed",
                        "could not read username", "no such", "upload-pack: not our ref",
                        "unadvertised object", "could not resolve host")


def _git_fetch(repo: Any, url: str, refspecs: list[str], local: bool) -> None:
    """``git fetch`` with no prompts, a stall limit, and retries with backoff on network trouble."""
    G = _gitmod()
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
           "GIT_HTTP_LOW_SPEED_TIME": str(int(READ_TIMEOUT))}
    attempt = 0
    while True:
        try:
            with repo.git.custom_environment(**env):
                repo.git.fetch("--quiet", url, *refspecs)
            return
        except G.GitCommandError as exc:
            text = (getattr(exc, "stderr", "") or "").lower()
            attempt += 1
            if local or attempt > 2 or any(p in text for p in _PERMANENT_GIT_ERRORS):
                raise
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            logger.warning("git fetch %s failed (%s); retrying in %.1fs", url, _stderr_tail(exc), delay)
            time.sleep(delay)


def _update_mirror(repo: Any, mirror: Path, url: str, commit: str, settings: Settings) -> None:
    """Fetch into the mirror from mirrors then upstream until ``commit`` is there."""
    G = _gitmod()
    tries: list[str] = []
    for cand in _git_candidates(url, settings):
        local = _is_local(cand)
        if settings.offline and not local:
            tries.append(f"{cand}: skipped (offline mode)")
            continue
        arg = cand
        if local:
            path = _local_path(cand, settings.root)
            if not path.exists():
                tries.append(f"{path}: not present")
                continue
            if path.resolve() == mirror.resolve():
                continue
            arg = str(path)
        logger.info("git fetch %s -> %s (commit %s is missing)", cand, mirror, commit[:12])
        first_error = ""
        try:
            _git_fetch(repo, arg, ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], local)
        except G.GitCommandError as exc:
            first_error = _stderr_tail(exc)
            if not local:  # a network failure would only repeat itself
                tries.append(f"{cand}: git fetch failed: {first_error}")
                continue
            # a local copy may be incomplete (missing objects) yet still hold the pinned commit
            logger.warning("git fetch %s failed (%s); asking for commit %s alone", cand, first_error,
                           commit[:12])
        else:
            if _has_commit(repo, commit):
                return
            logger.info("git fetch %s %s (not on a branch or tag; asking for it by id)", cand,
                        commit[:12])
        try:
            _git_fetch(repo, arg, [commit], local)
        except G.GitCommandError as exc:
            if first_error:
                tries.append(f"{cand}: git fetch failed: {first_error}; fetching the commit alone "
                             f"failed too: {_stderr_tail(exc)}")
            else:
                tries.append(f"{cand}: commit {commit} is on no branch or tag there, and fetching it "
                             f"by id failed: {_stderr_tail(exc)}")
            continue
        if _has_commit(repo, commit):
            return
        tries.append(f"{cand}: commit {commit} not found")
    if settings.offline:
        looked = [t for t in tries if not t.endswith("(offline mode)")]
        raise OfflineError(f"commit {commit} of git repository {url}", mirror,
                           url + ("; also tried:\n    " + "\n    ".join(looked) if looked else ""))
    raise FetchError(f"could not fetch commit {commit} of {url}",
                     "tried:\n    " + "\n    ".join(tries),
                     f"check the URL, the commit and the network (or settings.mirrors); a bare clone "
                     f"holding the commit can also be put at {mirror}", url=url, commit=commit,
                     tried=tries)


def _submodules_at(repo: Any, parent_url: str, commit: str) -> list[list[str]]:
    """[[path, absolute url, pinned commit], ...] from .gitmodules and the gitlinks at ``commit``."""
    G = _gitmod()
    try:
        if not repo.git.ls_tree(commit, "--", ".gitmodules").strip():
            return []
        listing = repo.git.config("--blob", f"{commit}:.gitmodules", "--list")
    except G.GitCommandError as exc:
        raise FetchError(f"cannot read .gitmodules of {parent_url} at {commit}", _stderr_tail(exc),
                         "fix .gitmodules upstream or set `submodules: false`", url=parent_url) from None
    modules: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("submodule."):
            continue
        name, _, field = key[len("submodule."):].rpartition(".")
        modules.setdefault(name, {})[field] = value
    out: list[list[str]] = []
    for name, fields in modules.items():
        path, url = fields.get("path"), fields.get("url")
        if not path or not url:
            logger.warning("%s@%s: submodule %r lacks path or url in .gitmodules; skipped",
                           parent_url, commit[:12], name)
            continue
        if not is_safe_relpath(path):
            raise FetchError(f"unsafe submodule path {path!r} in {parent_url} at {commit}",
                             "it points outside the tree", "fix .gitmodules upstream", url=parent_url)
        entry = repo.git.ls_tree(commit, "--", path).strip()
        fields_ = entry.split(None, 3)
        if len(fields_) < 3 or fields_[0] != "160000":
            logger.warning("%s@%s: submodule %r has no gitlink at %s; skipped", parent_url, commit[:12],
                           name, path)
            continue
        out.append([path, _resolve_submodule_url(parent_url, url), fields_[2]])
    return out


def _ensure_git(url: str, commit: str, submodules: bool, settings: Settings,
                visiting: set[tuple[str, str]]) -> Path:
    if not _COMMIT_RE.match(commit or ""):
        raise FetchError(f"git source {url} has no valid commit pin", f"commit is {commit!r}",
                         "pin `commit:` to a full 40-hex-digit commit id", url=url)
    mirror = git_mirror_path(url, settings)
    visiting.add((url, commit))
    if _git_pin_known(url, commit, submodules, settings):
        return mirror
    G = _gitmod()
    with _locked(mirror):
        fresh = not (mirror / "objects").is_dir()
        if fresh and mirror.exists() and (not mirror.is_dir() or any(mirror.iterdir())):
            raise FetchError(f"the git mirror {mirror} is unusable",
                             "it exists but is not a bare git repository",
                             f"delete {mirror} (or put a bare clone of {url} there) and fetch again",
                             url=url, mirror=str(mirror))
        mirror.parent.mkdir(parents=True, exist_ok=True)
        # a new mirror is made beside its final place and renamed when complete, so a failed
        # first fetch leaves nothing behind (and OfflineError's "put it at" path stays free)
        repo_dir = Path(tempfile.mkdtemp(prefix=mirror.name + ".new-", dir=mirror.parent)) \
            if fresh else mirror
        try:
            repo = _open_or_init_mirror(repo_dir, url)
            try:
                if not _has_commit(repo, commit):
                    _update_mirror(repo, mirror, url, commit, settings)
                else:
                    logger.info("%s: commit %s already in %s", url, commit[:12], mirror)
                try:
                    repo.git.update_ref(f"refs/hermitbuild/pins/{commit}", commit)
                    date = int(repo.git.show("-s", "--format=%ct", commit).strip())
                except (G.GitCommandError, ValueError) as exc:
                    raise FetchError(f"cannot read commit {commit} in {mirror}", _stderr_tail(exc),
                                     f"delete {mirror} and fetch again", url=url) from None
                subs = _submodules_at(repo, url, commit) if submodules else None
            finally:
                repo.close()
            if fresh:
                os.rename(repo_dir, mirror)
        finally:
            if fresh and repo_dir.exists():
                shutil.rmtree(repo_dir, ignore_errors=True)
    for _path, sub_url, sub_commit in subs or []:
        if (sub_url, sub_commit) in visiting:
            continue
        logger.info("%s: submodule %s -> %s at %s", url, _path, sub_url, sub_commit[:12])
        _ensure_git(sub_url, sub_commit, True, settings, visiting)
    with _locked(mirror):
        _record_pin(mirror, commit, date, subs)
    return mirror


def _checkout_git(url: str, commit: str, submodules: bool, settings: Settings, work: Path,
                  keep_git: bool) -> None:
    """Clone the mirror of ``url`` into the new directory ``work`` at ``commit`` (+ submodules)."""
    G = _gitmod()
    mirror = git_mirror_path(url, settings)
    logger.info("checking out %s at %s into %s", url, commit, work)
    try:
        repo = G.Repo.clone_from(str(mirror), str(work), shared=True, no_checkout=True)
        try:
            # the tree must not depend on the user's git configuration
            repo.git.config("core.autocrlf", "false")
            repo.git.config("core.eol", "lf")
            repo.git.checkout("--quiet", "--detach", commit)
            head = repo.git.rev_parse("HEAD").strip()
            if head != commit:
                raise FetchError(f"checkout of {url} is at {head}, not the pinned {commit}",
                                 "git checked out something else than asked",
                                 f"delete {mirror} and fetch again", url=url, commit=commit, head=head)
            subs = _submodules_at(repo, url, commit) if submodules else []
            for path, sub_url, sub_commit in subs:
                sub_dir = work / path
                if sub_dir.is_dir() and not any(sub_dir.iterdir()):
                    sub_dir.rmdir()
                if sub_dir.exists():
                    raise FetchError(f"cannot check out submodule {path} of {url}",
                                     f"{sub_dir} is not an empty directory in the parent's tree",
                                     "fix the parent repository", url=url)
                _checkout_git(sub_url, sub_commit, True, settings, sub_dir, keep_git)
            if keep_git:
                repo.git.remote("set-url", "origin", url)
        finally:
            repo.close()
    except G.GitCommandError as exc:
        raise FetchError(f"checkout of {url} at {commit} failed", _stderr_tail(exc),
                         f"if the mirror is damaged, delete {mirror} and fetch again",
                         url=url, commit=commit) from None
    if not keep_git:
        shutil.rmtree(work / ".git")


# --------------------------------------------------------------------------- public API

def is_fetched(source: Source, settings: Settings) -> bool:
    """True if the pinned source is in the downloads dir (cheap: reads small files only)."""
    if source.kind == "git":
        return _git_pin_known(source.url, source.commit, source.submodules, settings)
    if source.kind == "tarball":
        try:
            return _tarball_ok_cheap(tarball_path(source, settings), source.sha256)
        except FetchError:
            return False
    return False


def fetch_source(source: Source, settings: Settings) -> Path:
    """Make the pinned source present; returns the tarball file or the bare mirror dir."""
    if source.kind == "git":
        return _ensure_git(source.url, source.commit, source.submodules, settings, set())
    if source.kind == "tarball":
        return _ensure_tarball(source, settings)
    raise FetchError(f"unknown source kind {source.kind!r} for {source.url}",
                     "only git and tarball sources exist", "fix the recipe", url=source.url)


def fetch_recipe(recipe: Recipe, settings: Settings) -> list[Path]:
    """Fetch every source of ``recipe`` (overrides are not considered here)."""
    return [fetch_source(s, settings) for s in recipe.sources]


def _dest_of(source: Source, dest: Path) -> Path:
    sub = Path(source.dest or ".")
    if str(sub) != "." and not is_safe_relpath(str(sub)):
        raise FetchError(f"source {source.url} has an unsafe dest {source.dest!r}",
                         "dest must be a relative path inside the tree", "fix `dest:` in the recipe",
                         url=source.url)
    return Path(os.path.normpath(dest / sub))


def checkout(source: Source, settings: Settings, dest: Path, *, keep_git: bool = False) -> None:
    """Put the pinned source into ``dest / source.dest`` (fetching it first if needed)."""
    target = _dest_of(source, Path(dest))
    if source.kind == "tarball":
        path = fetch_source(source, settings)
        safe_extract(path, target, source.strip_components)
        return
    fetch_source(source, settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.checkout-", dir=target.parent))
    try:
        _checkout_git(source.url, source.commit, source.submodules, settings, tmp / "tree", keep_git)
        place_tree(tmp / "tree", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recorded_commit_date(source: Source, settings: Settings) -> int | None:
    """The committer date of a git source's pin as its mirror recorded it when it was fetched;
    None for tarballs or when not fetched yet.  Pure file reads (the build stage uses it)."""
    if source.kind != "git":
        return None
    entry = _read_pins(git_mirror_path(source.url, settings)).get(source.commit) or {}
    return int(entry["date"]) if isinstance(entry.get("date"), int) else None


def commit_date(source: Source, settings: Settings) -> int | None:
    """Committer date (Unix time) of a git source's pin; None for tarballs.

    Cheap once fetched (read from the mirror's pins file); fetches first otherwise.
    """
    if source.kind != "git":
        return None
    entry = _read_pins(git_mirror_path(source.url, settings)).get(source.commit)
    if entry is None or "date" not in entry:
        fetch_source(source, settings)
        entry = _read_pins(git_mirror_path(source.url, settings)).get(source.commit) or {}
    return int(entry["date"])
