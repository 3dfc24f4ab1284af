"""The local artifact store: ``<root>/<k[:2]>/<k>`` with sha256 sidecars, locked, LRU-pruned.

Contract: see :mod:`hermitbuild.cache` (Local cache).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ArtifactError, CacheError
from ..fsutil import file_lock, sha256_file

logger = logging.getLogger(__name__)
from .keys import _KEY_RE, check_key
from .artifact import (_CHUNK, _SHA_RE, _TMP_SUFFIX,
                       read_manifest, verify_artifact)
from .restore import _sweep_stale


# --- local cache

@dataclass(frozen=True)
class Entry:
    """One local cache entry."""

    key: str
    path: Path
    size: int
    last_used: float


class LocalCache:
    """A directory of artifacts: ``<root>/<k[:2]>/<k>`` + ``<k>.sha256``; see the module docstring."""

    def __init__(self, root: Path, max_size: int) -> None:
        self.root = Path(root)
        self.max_size = int(max_size)

    # ---- layout
    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    def _sidecar(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.sha256"

    @contextlib.contextmanager
    def _lock(self, exclusive: bool = True) -> Iterator[None]:
        lock = self.root / ".lock"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            open(lock, "a+b").close()  # can this process create and open the lock at all?
        except OSError as exc:
            if not exclusive and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                yield  # a read-only cache directory (e.g. shared): reading needs no lock
                return
            raise CacheError(f"cannot use the local cache {self.root}", str(exc),
                             "set cache_dir (HERMITBUILD_CACHE_DIR) to a writable directory") from None
        with file_lock(lock, shared=not exclusive):
            yield

    # ---- queries
    def has(self, key: str) -> bool:
        return self.path(key).is_file() and self._sidecar(key).is_file()

    def _read_sidecar(self, key: str) -> str | None:
        try:
            text = self._sidecar(key).read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            return None
        if len(text) != 2 or not _SHA_RE.match(text[0]) or text[1] != key:
            return None
        return text[0]

    def _problem(self, key: str) -> str | None:
        """Why the entry is bad, or None when its bytes match the sidecar."""
        expected = self._read_sidecar(key)
        if expected is None:
            return "its .sha256 sidecar is missing or malformed"
        try:
            actual, _ = sha256_file(self.path(key))
        except OSError as exc:
            return f"cannot read it: {exc}"
        if actual != expected:
            return f"sha256 {actual[:16]}... differs from the recorded {expected[:16]}..."
        return None

    def lookup(self, key: str) -> tuple[Path, str] | None:
        """The artifact of ``key`` and its recorded sha256 (touched as recently used), or None.

        Nothing is hashed here: the caller checks the digest while it reads the file anyway
        (a restore does, in its one pass); :meth:`get` is the checked variant."""
        path = self.path(key)
        with self._lock(exclusive=False):
            expected = self._read_sidecar(key)
            if expected is None or not path.is_file():
                return None
            with contextlib.suppress(OSError):
                os.utime(path)
            return path, expected

    def get(self, key: str) -> Path | None:
        """The verified artifact of ``key`` (touched as recently used), or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        with self._lock(exclusive=False):
            if not path.is_file():
                return None
            problem = self._problem(key)
            if problem is None:
                with contextlib.suppress(OSError):
                    os.utime(path)
                return path
        logger.warning("local cache entry %s is corrupt (%s); discarding it", key[:12], problem)
        try:
            self.remove(key)
        except (CacheError, OSError) as exc:
            logger.warning("could not delete %s: %s", path, exc)
        return None

    def remove(self, key: str) -> bool:
        """Delete an entry; True if something was deleted."""
        with self._lock():
            removed = False
            for p in (self.path(key), self._sidecar(key)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed = True
            return removed

    def put(self, key: str, artifact: Path, *, move: bool = False, replace: bool = False,
            digest: str | None = None) -> Path:
        """Store ``artifact`` under ``key`` (its manifest must carry that key); return the cache path.

        An entry already there is kept unless ``replace`` (used to store an annotated copy).
        ``digest``: the sha256 the caller has just verified (a download); with ``move`` it is
        recorded without hashing the file again when the move is a rename."""
        check_key(key)
        artifact = Path(artifact)
        manifest = read_manifest(artifact)
        if manifest.get("key") != key:
            raise ArtifactError(f"refusing to cache {artifact} under {key[:12]}",
                                f"its manifest carries key {str(manifest.get('key'))[:12]}",
                                "store an artifact under the key it was packed for")
        final = self.path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=_TMP_SUFFIX, dir=final.parent)
        except OSError as exc:
            raise CacheError(f"cannot write to the local cache {self.root}", str(exc),
                             "set cache_dir (HERMITBUILD_CACHE_DIR) to a writable directory") from None
        try:
            if move:
                os.close(fd)
                try:
                    os.replace(artifact, tmp)
                except OSError:
                    shutil.copyfile(artifact, tmp)
                    digest = None
                if digest is None or not _SHA_RE.match(digest):
                    digest, _ = sha256_file(tmp)
            else:
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, open(artifact, "rb") as src:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                digest = h.hexdigest()
            os.chmod(tmp, 0o644)
            with self._lock():
                if not replace and self.has(key) and self._read_sidecar(key) is not None and final.exists():
                    os.unlink(tmp)
                    with contextlib.suppress(OSError):
                        os.utime(final)
                else:
                    os.replace(tmp, final)
                    side_fd, side_tmp = tempfile.mkstemp(prefix=f".{key}.sha256.", suffix=_TMP_SUFFIX,
                                                         dir=final.parent)
                    with os.fdopen(side_fd, "w", encoding="ascii") as fh:
                        fh.write(f"{digest}  {key}\n")
                    os.chmod(side_tmp, 0o644)
                    os.replace(side_tmp, self._sidecar(key))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise CacheError(f"cannot store {key[:12]} in the local cache {self.root}", str(exc),
                                 "check free space and permissions of the cache directory") from None
            raise
        logger.info("stored %s in the local cache", key[:12])
        if self.max_size and self.total_size() > self.max_size:
            self.prune(keep=(key,))
        return final

    def list(self) -> list[Entry]:
        """All entries, most recently used first."""
        out: list[Entry] = []
        if not self.root.is_dir():
            return out
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for p in sub.iterdir():
                if _KEY_RE.match(p.name):
                    with contextlib.suppress(FileNotFoundError):
                        st = p.stat()
                        out.append(Entry(p.name, p, st.st_size, st.st_mtime))
        out.sort(key=lambda e: e.last_used, reverse=True)
        return out

    def total_size(self) -> int:
        return sum(e.size for e in self.list())

    def stats(self) -> dict[str, Any]:
        entries = self.list()
        return {"root": str(self.root), "entries": len(entries),
                "size": sum(e.size for e in entries), "max_size": self.max_size}

    def prune(self, max_size: int | None = None, keep: Sequence[str] = ()) -> list[str]:
        """Delete least recently used entries until the total is <= ``max_size``; return their keys.

        ``max_size`` defaults to the cache's bound; a bound of 0 on the cache means "unbounded"
        (only an explicit ``max_size=0`` empties it).  Also removes leftover temp files older
        than an hour and sidecars without artifact.
        """
        bound = self.max_size if max_size is None else max_size
        unbounded = max_size is None and not self.max_size
        removed: list[str] = []
        with self._lock():
            entries = self.list()
            total = sum(e.size for e in entries)
            for e in reversed(entries):  # least recently used first
                if unbounded or total <= bound:
                    break
                if e.key in keep:
                    continue
                for p in (e.path, self._sidecar(e.key)):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                total -= e.size
                removed.append(e.key)
            self._sweep()
        if removed:
            logger.info("pruned %d entries from the local cache", len(removed))
        return removed

    def _sweep(self) -> None:
        if not self.root.is_dir():
            return
        if (self.root / ".incoming").is_dir():
            _sweep_stale(self.root / ".incoming", "", age=3600)
        cutoff = time.time() - 3600
        for sub in self.root.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for p in sub.iterdir():
                with contextlib.suppress(OSError):
                    if p.name.endswith(_TMP_SUFFIX) and p.stat().st_mtime < cutoff:
                        p.unlink()
                    elif p.name.endswith(".sha256") and not (sub / p.name[:-7]).exists():
                        p.unlink()

    def verify(self, remove: bool = True) -> list[tuple[str, str]]:
        """Deep-check every entry (sidecar and full artifact); return [(key, problem)] of bad ones."""
        bad: list[tuple[str, str]] = []
        for e in self.list():
            problem = self._problem(e.key)
            if problem is None:
                try:
                    verify_artifact(e.path, e.key)
                except ArtifactError as exc:
                    problem = exc.why
            if problem is not None:
                bad.append((e.key, problem))
                logger.warning("local cache entry %s is bad: %s", e.key[:12], problem)
                if remove:
                    self.remove(e.key)
        return bad
