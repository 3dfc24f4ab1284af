"""Tarball sources: verified HTTP downloads (requests), resumed, retried and rate-limited.

Contract: see :mod:`hermitbuild.fetch` (tarball sources); :class:`TarballFetcher` is this
kind's :class:`~hermitbuild.fetch.common.SourceFetcher`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChecksumError, FetchError, OfflineError
from ..fsutil import sha256_file, write_atomic
from ..recipe import Source
from ..settings import Settings, format_size, parse_duration, parse_size
from ..unpack import safe_extract
from . import common
from .common import (CHUNK, SHA256_RE, USER_AGENT, VERIFIED_SUFFIX, Miss, is_local, local_path, locked,
                     tarball_path)

if TYPE_CHECKING:  # pragma: no cover
    import requests

logger = logging.getLogger(__name__)


def _sha256_file(path: Path) -> str:
    return sha256_file(path)[0]


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
        logger.info("downloading %s%s%s", label, f" ({format_size(total)})" if total else "",
                    f", resuming at {format_size(done)}" if done else "")

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
                logger.info("  %s: %d%% (%s of %s)", self.label, pct, format_size(self.done),
                            format_size(self.total))
                self.next_pct = (pct // 25 + 1) * 25

    def _draw(self, now: float) -> None:
        rate = (self.done - self.start_done) / max(now - self.started, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 24)
            text = f"{self.label} [{bar:<24}] {frac * 100:5.1f}% {format_size(self.done)} {format_size(rate)}/s"
        else:
            text = f"{self.label} {format_size(self.done)} {format_size(rate)}/s"
        sys.stderr.write("\r" + text[:120].ljust(80))
        sys.stderr.flush()

    def close(self, ok: bool = True) -> None:
        now = time.monotonic()
        if self.tty:
            self._draw(now)
            sys.stderr.write("\n")
            sys.stderr.flush()
        logger.info("%s %s: %s in %.1fs", "downloaded" if ok else "interrupted", self.label,
                    format_size(self.done), now - self.started)


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
        if is_local(mirror):
            out.append(str(local_path(mirror, settings.root) / source.basename))
        else:
            out.append(mirror.rstrip("/") + "/" + source.basename)
    out.append(source.url)
    return out


class _Transient(Exception):
    """A retryable failure (message: why)."""


_DNS_FAILURES = ("NameResolutionError", "Name or service not known", "nodename nor servname",
                 "Temporary failure in name resolution", "No address associated with hostname")


class _Unresolved(_Transient):
    """The host name did not resolve (usually no network or no DNS): retried only common.DNS_RETRIES times."""


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
    """Stream ``url`` into ``part`` (resuming what is there); raises Miss on failure."""
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
                                   timeout=(common.CONNECT_TIMEOUT, min(common.READ_TIMEOUT, limits.stall)),
                                   allow_redirects=True)
            except requests.TooManyRedirects as exc:  # a redirect loop does not heal by retrying
                raise Miss(f"redirect loop ({exc})") from None
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
                        raise Miss("HTTP 416 Range Not Satisfiable")
                    continue
                if status >= 500 or status in (408, 425, 429):
                    raise _Transient(f"HTTP {status} {resp.reason}")
                if status not in (200, 206):
                    raise Miss(f"HTTP {status} {resp.reason}")
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
                            raise Miss("HTTP 206 with a wrong Content-Range")
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
                if resumes > common.MAX_RESUMES:
                    raise Miss(f"gave up after {resumes} interrupted transfers: {exc}") from None
            else:
                failures += 1
                if failures > (common.DNS_RETRIES if isinstance(exc, _Unresolved) else common.RETRIES):
                    raise Miss(f"gave up after {failures} attempts: {exc}") from None
            delay = common.BACKOFF_SECONDS * 2 ** max(failures - 1, 0) if not gained else 0.0
            logger.warning("%s: %s; %s in %.1fs", url, exc,
                           "resuming with a Range request" if part.exists() and part.stat().st_size
                           else "retrying", delay)
            if delay:
                time.sleep(delay)


def _copy_local(src: Path, part: Path, label: str) -> None:
    if not src.is_file():
        raise Miss("not present")
    logger.info("copying %s from %s", label, src)
    try:
        shutil.copyfile(src, part)
    except OSError as exc:
        raise Miss(f"cannot copy: {exc.strerror or exc}") from None


def _ensure_tarball(source: Source, settings: Settings) -> Path:
    if not SHA256_RE.match(source.sha256 or ""):
        raise FetchError(f"tarball {source.url} has no valid sha256 pin",
                         f"sha256 is {source.sha256!r}", "add `sha256: <64 hex digits>` to the source",
                         url=source.url)
    path = tarball_path(source, settings)
    if _tarball_ok_cheap(path, source.sha256):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):
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
                local = is_local(cand)
                if settings.offline and not local:
                    tries.append(f"{cand}: skipped (offline mode)")
                    continue
                for attempt in (1, 2):
                    resumed = part.exists() and part.stat().st_size > 0 and not local
                    try:
                        if local:
                            _copy_local(local_path(cand, settings.root), part, path.name)
                        else:
                            if session is None:
                                session = _session()
                            _download(cand, part, session, path.name, limits)
                    except Miss as exc:
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


class TarballFetcher:
    """Tarballs: the verified file under the downloads directory."""

    def is_fetched(self, source: Source, settings: Settings) -> bool:
        try:
            return _tarball_ok_cheap(tarball_path(source, settings), source.sha256)
        except FetchError:
            return False

    def fetch(self, source: Source, settings: Settings) -> Path:
        return _ensure_tarball(source, settings)

    def checkout(self, source: Source, settings: Settings, target: Path, keep_git: bool) -> None:
        safe_extract(self.fetch(source, settings), target, source.strip_components)

    def commit_date(self, source: Source, settings: Settings, *, fetch: bool) -> int | None:
        return None
