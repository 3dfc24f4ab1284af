"""Small file-system helpers shared by the stages.

Contract: :func:`file_lock` is an exclusive, cross-process ``flock`` on a lock
file (created with its parent directories), released when the block ends, also
on exceptions.  :func:`write_atomic` (re-exported from :mod:`yamlutil`) writes a
file through a temp file + rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .yamlutil import write_atomic

__all__ = ["file_lock", "write_atomic"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
