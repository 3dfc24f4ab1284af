"""Restoring an artifact into an install root: verified in a private temp dir, then merged
file by file, rolled back on failure (all or nothing).

Contract: see :mod:`hermitbuild.cache` (Artifacts: restore).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ..errors import CacheError
from ..fsutil import is_inside, sha256_file

from .artifact import _RESTORE_TMP_PREFIX, _walk_members
from .keys import check_key

logger = logging.getLogger(__name__)


def restore_artifact(artifact: Path, dest_root: Path, expected_key: str,
                     raw_sha256: str | None = None) -> list[str]:
    """Verify ``artifact`` and merge it into ``dest_root``; return the restored relative paths.

    The list holds every entry of the manifest (directories first, in manifest order).
    ``raw_sha256``: the file's recorded sha256, checked in the same single read.
    """
    artifact, dest_root = Path(artifact), Path(dest_root)
    check_key(expected_key)
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
        _sweep_stale(dest_root, _RESTORE_TMP_PREFIX)
        work = Path(tempfile.mkdtemp(prefix=_RESTORE_TMP_PREFIX, dir=dest_root))
    except OSError as exc:
        raise CacheError(f"cannot restore into {dest_root}", str(exc),
                         "check the install root exists and is writable") from None
    try:
        stage = work / "stage"
        stage.mkdir()
        _, files = _walk_members(artifact, expected_key, stage, raw_sha256)
        _check_conflicts(files, dest_root)
        _merge(files, stage, work / "backup", dest_root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("restored %s (%d entries) into %s", expected_key[:12], len(files), dest_root)
    return [f["path"] for f in files]


def _sweep_stale(directory: Path, prefix: str, age: float = 6 * 3600) -> None:
    """Remove leftovers of killed runs (temp dirs named ``prefix*`` older than ``age`` seconds)."""
    cutoff = time.time() - age
    with contextlib.suppress(OSError):
        for p in directory.iterdir():
            if p.name.startswith(prefix) and p.lstat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)


def _check_conflicts(files: Sequence[dict], dest_root: Path) -> None:
    real_root = os.path.realpath(dest_root)
    absent: set[str] = set()  # directories of the manifest that dest_root does not have
    resolved: dict[str, str] = {}  # parent -> its real path (resolved once per directory)
    for item in files:
        parent = posixpath.dirname(item["path"])
        if parent in absent:  # nothing can be in the way below a directory that is not there
            if item["type"] == "dir":
                absent.add(item["path"])
            continue
        dest = os.path.join(dest_root, item["path"])
        parent_real = resolved.get(parent)
        if parent_real is None:
            parent_real = resolved[parent] = os.path.realpath(os.path.dirname(dest))
        if not is_inside(parent_real, real_root):
            raise CacheError(f"cannot restore {item['path']} into {dest_root}",
                             f"its directory resolves to {parent_real}, outside the install root "
                             "(a symlink in the install root points elsewhere)",
                             "remove that symlink from the install root and re-run")
        exists = os.path.lexists(dest)
        if item["type"] == "dir" and not exists:
            absent.add(item["path"])
        elif item["type"] == "dir":
            if not os.path.isdir(dest):
                raise CacheError(f"cannot restore directory {item['path']} into {dest_root}",
                                 f"{dest} exists and is not a directory",
                                 f"remove {dest} and re-run")
        elif exists and os.path.isdir(dest) and not os.path.islink(dest):
            raise CacheError(f"cannot restore {item['path']} into {dest_root}",
                             f"{dest} is a directory, the artifact has a {item['type']} there",
                             f"remove {dest} and re-run")


def _unchanged(dest: str, item: dict) -> bool:
    """``dest`` is a regular file with the entry's mode, size and sha256."""
    try:
        st = os.lstat(dest)
        if (not stat.S_ISREG(st.st_mode) or st.st_size != item["size"]
                or stat.S_IMODE(st.st_mode) != item["mode"] & 0o777):
            return False
        return sha256_file(dest)[0] == item["sha256"]
    except OSError:
        return False


def _merge(files: Sequence[dict], stage: Path, backup: Path, dest_root: Path) -> None:
    """Move the verified entries into place; undo everything on any failure.

    A directory missing in ``dest_root`` is moved over whole (one rename for its subtree);
    files over existing paths are replaced one by one, the old ones kept as hard links in
    ``backup`` until the end so they can be put back.  A file already there with the same
    mode and content is left as it is (a reinstall after an incremental build changes the
    mtimes of only the files that changed, as `make install` with `install -C` would).
    """
    backup.mkdir()
    done: list[tuple[str, str, str | None]] = []
    moved: set[str] = set()
    try:
        for i, item in enumerate(files):
            path = item["path"]
            parent = posixpath.dirname(path)
            if parent in moved:
                if item["type"] == "dir":
                    moved.add(path)
                continue
            dest = os.path.join(dest_root, path)
            src = os.path.join(stage, path)
            if item["type"] == "dir":
                if not os.path.lexists(dest):
                    try:
                        os.rename(src, dest)
                    except OSError as exc:  # a concurrent restore made it meanwhile
                        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.isdir(dest):
                            raise
                    else:
                        done.append(("movedir", dest, src))
                        moved.add(path)
                continue
            if item["type"] == "file" and _unchanged(dest, item):
                continue  # same bytes and mode already there: its mtime stays, so no make rebuilds on it
            saved = None
            if os.path.lexists(dest):
                saved = os.path.join(backup, str(i))
                try:
                    os.link(dest, saved, follow_symlinks=False)
                except OSError:  # no hard links here: move the old file aside instead
                    os.rename(dest, saved)
                    done.append(("aside", dest, saved))
            os.replace(src, dest)
            done.append(("file", dest, saved))
    except BaseException as exc:
        for kind, dest, saved in reversed(done):
            with contextlib.suppress(OSError):
                if kind == "movedir":
                    assert saved is not None
                    os.rename(dest, saved)
                elif kind == "aside":  # still aside only if its "file" step never happened
                    assert saved is not None
                    if os.path.lexists(saved):
                        os.replace(saved, dest)
                elif saved is not None:
                    os.replace(saved, dest)
                else:
                    os.unlink(dest)
        if isinstance(exc, OSError):
            raise CacheError(f"cannot restore into {dest_root}", f"{exc} (nothing was changed)",
                             "check free space and permissions of the install root") from None
        raise
