"""The one toolbox for the file-system rules every stage shares.

Contract: :func:`file_lock` is a cross-process ``flock`` (exclusive, or shared) on a lock
file (created with its parent directories), released when the block ends, also
on exceptions; a lock another process holds is waited for with a warning saying so.
:func:`is_inside` is the one "is this path inside that root" rule and
:func:`is_safe_relpath` the one "does this relative path stay inside" rule;
:func:`sha256_file`, :func:`rmtree`, :func:`read_json` / :func:`write_json` (stamps) are
the shared helpers of that name; :func:`discard` is :func:`rmtree` without waiting (rename
now, delete in a thread).  :func:`read_text` reads a UTF-8 file or raises a located error
naming the file (and the line of a byte that is not UTF-8).  :func:`ensure_writable_dir`
creates a directory and proves it writable, or raises a located error naming the setting.  :func:`write_atomic` writes a
file through a temp file + rename; :class:`Transaction` makes a set of such writes (and
deletions) all-or-nothing.  :class:`StatMemo` keeps, for one process, a result computed from a
file's content while its stat (size, mtime, ctime, inode, device) is unchanged; a file changed
less than :data:`RACY_SECONDS` before it was read is read again every time (an edit within the
clock's granularity keeps the stat: git's "racily clean" rule).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
import time
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .errors import InputError

logger = logging.getLogger(__name__)


__all__ = ["file_lock", "write_atomic", "read_text", "ensure_writable_dir", "sha256_file", "rmtree",
           "is_inside", "is_safe_relpath", "read_json", "write_json", "StatMemo"]

T = TypeVar("T")
# a file whose mtime or ctime is this close to the moment it was read may still change without
# its stat changing (timestamps advance in clock ticks of a few milliseconds)
RACY_SECONDS = 2.0


class StatMemo(Generic[T]):
    """``compute(path)`` once per file and stat, for this process (see the module contract)."""

    def __init__(self, compute: Callable[[Path], T]) -> None:
        self._compute = compute
        self._kept: dict[Path, tuple[tuple[int, ...], T]] = {}

    def get(self, path: Path) -> T:
        """The result for ``path`` (OSError when it cannot be stat'ed)."""
        st = os.stat(path)
        sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        kept = self._kept.get(path)
        if kept is not None and kept[0] == sig:
            return kept[1]
        value = self._compute(path)  # stat first: a change while computing gives a new stat
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECONDS * 1e9:
            self._kept[path] = (sig, value)
        else:
            self._kept.pop(path, None)
        return value

_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def rmtree(path: Path) -> None:
    """Remove a file, a symlink or a whole tree (read-only directories inside included); a
    missing path is fine."""
    def onerror(func: Any, p: str, exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o755)
            os.chmod(p, 0o755)
            func(p)
        except OSError:
            pass

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=onerror)


_DISCARDS: list[threading.Thread] = []
# hidden siblings a thread of this process is deleting: a later discard of the same path
# (a reset, then the step's own fresh start) must not hand them to a second thread
_DISCARDING: set[Path] = set()
_DISCARD_LOCK = threading.Lock()


def _delete(tmp: Path) -> None:
    try:
        rmtree(tmp)
    finally:
        with _DISCARD_LOCK:
            _DISCARDING.discard(tmp)


def discard(path: Path) -> None:
    """Remove ``path`` as :func:`rmtree` does, without waiting for it: it is renamed to a hidden
    sibling (``.<name>.discard-<random>``, one atomic rename: ``path`` is free at once) that a
    thread deletes while the caller goes on (a stage or build directory emptied while the next
    step's container starts).  Siblings a killed process left behind go the same way; those a
    thread of this process is already deleting are left to it.  Threads are not daemons: the
    process waits for them before it exits; :func:`wait_discards` waits now.  When the rename
    fails the tree is removed here and now."""
    with _DISCARD_LOCK:
        leftovers = [old for old in path.parent.glob(f".{glob.escape(path.name)}.discard-*")
                     if old not in _DISCARDING]
        if path.exists() or path.is_symlink():
            tmp = path.with_name(f".{path.name}.discard-{secrets.token_hex(4)}")
            try:
                os.rename(path, tmp)
            except OSError:
                rmtree(path)
            else:
                leftovers.append(tmp)
        _DISCARDING.update(leftovers)
    for old in leftovers:
        thread = threading.Thread(target=_delete, args=(old,), name=f"discard {old.name}")
        thread.start()
        _DISCARDS.append(thread)


def wait_discards() -> None:
    """Wait until every tree :func:`discard` handed to a thread is gone."""
    while _DISCARDS:
        _DISCARDS.pop().join()


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` is ``root`` or below it, comparing the paths as given (resolve them
    first, e.g. with os.path.realpath, where symlinks matter).  The one place of this rule."""
    path, root = os.fspath(path), os.fspath(root).rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root == os.sep else root + os.sep)


def is_safe_relpath(rel: str) -> bool:
    """A non-empty relative path with no ``..`` component (stays inside whatever it joins)."""
    return bool(rel) and not rel.startswith("/") and ".." not in Path(rel).parts


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a stamp file, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a stamp file atomically (sorted keys, one trailing newline)."""
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def ensure_writable_dir(path: Path, setting: str, error: Callable[..., Exception] = InputError) -> Path:
    """Create ``path`` (with parents) and check a file can be written in it, even as root on a
    read-only file system; else raise ``error`` naming the directory, the setting and the fix."""
    fix = (f"create it and make it writable for you (`sudo mkdir -p {path} && sudo chown "
           f"$(id -u):$(id -g) {path}`), or choose another {setting} (HERMITBUILD_{setting.upper()})")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hermitbuild-write-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise error(f"cannot write in {path}: {exc.strerror}", fix, field=setting) from None
    return path


def read_text(path: Path | str, error: Callable[..., Exception] = InputError, *,
              fix: str = "") -> str:
    """The UTF-8 text of ``path``; unreadable or undecodable files raise ``error`` (a
    :class:`~hermitbuild.errors.LocatedError` class) naming the file and, for a byte that
    is not UTF-8, its line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror}",
                    fix or "check that the path exists and is readable", file=str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"byte 0x{data[exc.start]:02x} at line {line} is not UTF-8 text",
                    fix or "save the file as UTF-8 (remove or re-type that character)",
                    file=str(path), line=line) from None


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on ``path`` (a lock file) for the duration of the block: exclusive, or
    shared with other shared holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:  # say why nothing happens, then wait
            logger.warning("waiting for %s: another hermitbuild run holds it (it goes on when that "
                           "one is done)", path)
            fcntl.flock(fd, mode)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_atomic(path: Path | str, data: str | bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class Transaction:
    """All-or-nothing file edits.  Use as a context manager: :meth:`apply` writes (atomically)
    or deletes (``None``) a file, :meth:`snapshot` remembers one an external tool may change;
    when the block raises, every file touched gets its previous bytes back (or is removed
    again)."""

    def __init__(self) -> None:
        self._saved: dict[Path, bytes | None] = {}
        self.touched: list[Path] = []

    def _save(self, path: Path) -> None:
        if path not in self._saved:
            try:
                self._saved[path] = path.read_bytes()
            except FileNotFoundError:
                self._saved[path] = None

    def snapshot(self, path: Path) -> None:
        """Remember ``path`` so that an external tool may change it (restored on rollback)."""
        self._save(path)

    def apply(self, path: Path, new: bytes | None) -> None:
        self._save(path)
        if new is None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        else:
            write_atomic(path, new)
        if path not in self.touched:
            self.touched.append(path)

    def changed_snapshots(self) -> list[Path]:
        out: list[Path] = []
        for path, old in self._saved.items():
            try:
                now = path.read_bytes()
            except FileNotFoundError:
                now = None
            if now != old:
                out.append(path)
        return out

    def rollback(self) -> None:
        for path, old in reversed(list(self._saved.items())):
            try:
                if old is None:
                    if path.exists():
                        path.unlink()
                else:
                    try:
                        if path.read_bytes() == old:
                            continue
                    except FileNotFoundError:
                        pass
                    write_atomic(path, old)
            except OSError as exc:  # pragma: no cover - best effort, reported
                logger.error("could not restore %s: %s", path, exc)

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        if exc_type is not None:
            self.rollback()
        return False
