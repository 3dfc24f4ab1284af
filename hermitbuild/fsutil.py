"""Small file-system helpers shared by the stages.

Contract: :func:`file_lock` is an exclusive, cross-process ``flock`` on a lock
file (created with its parent directories), released when the block ends, also
on exceptions; a lock another process holds is waited for with a warning saying so.  :func:`read_text` reads a UTF-8 file or raises a located error
naming the file (and the line of a byte that is not UTF-8).  :func:`ensure_writable_dir`
creates a directory and proves it writable, or raises a located error naming the setting.  :func:`write_atomic` writes a
file through a temp file + rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError

logger = logging.getLogger(__name__)


__all__ = ["file_lock", "write_atomic", "read_text", "ensure_writable_dir"]


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
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # say why nothing happens, then wait
            logger.warning("waiting for %s: another hermitbuild run holds it (it goes on when that "
                           "one is done)", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
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
