"""Safe extraction of source archives.

Contract:
- :func:`safe_extract` unpacks a tar archive (plain, gzip, bzip2, xz) or a zip
  archive into ``dest``, stripping ``strip_components`` leading path components
  like ``tar --strip-components`` (``.`` and empty components are dropped first,
  so ``./pkg-1.0/x`` strips like ``pkg-1.0/x``; members left with no components
  are skipped; hard-link targets are stripped the same way, symlink targets are
  not).
- It refuses, with :class:`~hermitbuild.errors.UnpackError` naming the archive
  and the member: absolute member names, ``..`` components, symlinks whose
  target is absolute or resolves outside the tree (including escapes through
  chains of symlinks), hard links whose target is outside the tree, and device,
  FIFO or other special members.  Unreadable/corrupt archives raise the same
  error.
- Extraction goes into a temporary directory beside ``dest``; only when the
  whole archive passed is it moved into place (``dest`` created, or the top
  level entries merged into an existing ``dest``).  A refused or failed archive
  leaves nothing behind.
- Every archive is read to its end and verified before the tree is placed: after the
  last member only zero padding may follow, a compressed stream must end with a valid
  trailer (gzip CRC and length, bzip2 and xz checks), and every zip member's CRC is
  checked as it is read.  A corrupt or truncated archive is an UnpackError naming it.
- No ownership is restored (files belong to the caller, even as root);
  setuid/setgid/sticky bits and group/other write bits are cleared; member
  modification times are kept.
- :func:`place_tree` is the "move a finished temp tree into place" step, shared
  with :mod:`hermitbuild.fetch` (git checkouts).
"""

from __future__ import annotations

import copy
import gzip
import logging
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from .errors import UnpackError
from .fsutil import is_inside

logger = logging.getLogger(__name__)

__all__ = ["safe_extract", "place_tree"]

_FILTER_ERROR: type[BaseException] | tuple = getattr(tarfile, "FilterError", ())  # Python >= 3.11.4
_FIX_UNSAFE = ("the archive is unsafe or was tampered with: check where it came from and its sha256; "
               "do not extract it by hand")


def _refuse(archive: Path, member: str, why: str) -> UnpackError:
    return UnpackError(f"refusing to unpack {archive}: unsafe member {member!r}", why, _FIX_UNSAFE,
                       archive=str(archive), member=member)


def _components(archive: Path, name: str) -> list[str]:
    """The checked path components of a member name (no strip yet)."""
    if not name:
        raise _refuse(archive, name, "empty member name")
    if name.startswith("/"):
        raise _refuse(archive, name, "absolute path (it would be written outside the destination)")
    if "\x00" in name:
        raise _refuse(archive, name, "NUL byte in the name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, name, "'..' path component (it could be written outside the destination)")
    return parts


def _stripped(archive: Path, name: str, strip: int) -> str | None:
    parts = _components(archive, name)
    if len(parts) <= strip:
        return None
    return "/".join(parts[strip:])


def _check_symlink(archive: Path, member: str, new_name: str, target: str) -> None:
    if not target:
        raise _refuse(archive, member, "symlink with an empty target")
    if target.startswith("/"):
        raise _refuse(archive, member, f"symlink to the absolute path {target!r} (outside the tree)")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(new_name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(archive, member, f"symlink target {target!r} points outside the tree")


def _inside(root: str, path: str) -> bool:
    return is_inside(path, root)


def _check_parent_real(archive: Path, member: str, tmp: Path, new_name: str) -> None:
    """The member's parent directory (as on disk now) must resolve inside the temp tree."""
    root = os.path.realpath(tmp)
    parent = os.path.realpath(os.path.join(tmp, os.path.dirname(new_name)))
    if not _inside(root, parent):
        raise _refuse(archive, member, "it would be written through a symlink that leads outside the tree")


def _final_symlink_walk(archive: Path, tmp: Path) -> None:
    """After extraction: every symlink must still resolve inside the tree (catches chains)."""
    root = os.path.realpath(tmp)
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                real = os.path.realpath(full)
                if not _inside(root, real):
                    rel = os.path.relpath(full, tmp)
                    raise _refuse(archive, rel, f"symlink resolves to {real}, outside the tree "
                                               "(through a chain of symlinks)")


def _sanitise_mode(mode: int, is_dir: bool) -> int:
    mode &= 0o755  # no setuid/setgid/sticky, no group/other write
    mode |= 0o700 if is_dir else 0o600
    return mode


def _corrupt(archive: Path, why: str) -> UnpackError:
    return UnpackError(f"cannot read archive {archive}: it is corrupt or truncated", why,
                       "delete the file and fetch it again (or fix the mirror or override that "
                       "provided it)", archive=str(archive))


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def _extract_tar(archive: Path, tmp: Path, strip: int) -> int:
    """Extract a tar archive; damaged data anywhere (a header, a member, the compressed
    stream) is an UnpackError, whichever layer notices it."""
    try:
        return _extract_tar_members(archive, tmp, strip)
    except _CORRUPT as exc:
        raise _corrupt(archive, f"{type(exc).__name__}: {exc}") from None


def _extract_tar_members(archive: Path, tmp: Path, strip: int) -> int:
    count = 0
    has_filter = hasattr(tarfile, "data_filter")
    dirs: list[tarfile.TarInfo] = []
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnpackError(f"cannot read archive {archive}", str(exc),
                          "delete the file and fetch it again (its sha256 is checked on download)",
                          archive=str(archive)) from None
    with tar:
        if not has_filter:  # old Pythons: never chown
            tar.chown = lambda *a, **k: None  # type: ignore[method-assign]
        for member in tar:
            new_name = _stripped(archive, member.name, strip)
            if new_name is None:
                continue
            if member.ischr() or member.isblk():
                raise _refuse(archive, member.name, "device node (never part of a source tree)")
            if member.isfifo():
                raise _refuse(archive, member.name, "FIFO (never part of a source tree)")
            if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                raise _refuse(archive, member.name, f"unsupported member type {member.type!r}")
            m = copy.copy(member)
            m.name = new_name
            if member.issym():
                _check_symlink(archive, member.name, new_name, member.linkname)
            elif member.islnk():
                try:
                    link = _stripped(archive, member.linkname, strip)
                except UnpackError:
                    raise _refuse(archive, member.name,
                                  f"hard link to {member.linkname!r}, outside the tree") from None
                if link is None:
                    raise _refuse(archive, member.name,
                                  f"hard link to {member.linkname!r}, outside the stripped tree")
                m.linkname = link
                real_target = os.path.realpath(os.path.join(tmp, link))
                if not _inside(os.path.realpath(tmp), real_target):
                    raise _refuse(archive, member.name, f"hard link to {member.linkname!r} leads outside "
                                                        "the tree through a symlink")
            _check_parent_real(archive, member.name, tmp, new_name)
            m.uid = m.gid = 0
            m.uname = m.gname = ""
            m.mode = _sanitise_mode(m.mode, m.isdir())
            try:
                if m.isdir():
                    dirs.append(m)
                    if has_filter:
                        tar.extract(m, tmp, set_attrs=False, filter="data")
                    else:
                        tar.extract(m, tmp, set_attrs=False)
                elif has_filter:
                    tar.extract(m, tmp, filter="data")
                else:
                    tar.extract(m, tmp)
            except _FILTER_ERROR as exc:  # the stdlib's own check agreed it is unsafe
                raise _refuse(archive, member.name, str(exc)) from None
            except (tarfile.TarError, EOFError) as exc:
                raise UnpackError(f"cannot read archive {archive}", f"member {member.name!r}: {exc}",
                                  "delete the file and fetch it again", archive=str(archive),
                                  member=member.name) from None
            count += 1
        _check_tar_end(archive, tar, count)
        # directory attributes last, deepest first (like TarFile.extractall)
        for d in sorted(dirs, key=lambda t: t.name, reverse=True):
            path = os.path.join(tmp, d.name)
            os.chmod(path, d.mode)
            os.utime(path, (d.mtime, d.mtime))
    return count


def _check_tar_end(archive: Path, tar: tarfile.TarFile, count: int) -> None:
    """Read the archive to its very end: only zero blocks may follow the last member, and the
    compressed stream must end cleanly (gzip's CRC and length, bzip2's and xz's checks are
    verified only there).  tarfile takes a corrupt header after the first member for the end
    of the archive, and never reads a compressed stream's trailer: both would pass silently."""
    fileobj = tar.fileobj
    try:
        fileobj.seek(tar.offset)
        while True:
            chunk = fileobj.read(1 << 20)
            if not chunk:
                break
            if chunk.strip(b"\0"):
                raise _corrupt(archive, f"data follows the point where the archive's members end "
                                        f"(after {count} member(s)): a member header is damaged")
    except (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError) as exc:
        raise _corrupt(archive, f"the compressed data does not end cleanly: {exc}") from None


def _extract_zip(archive: Path, tmp: Path, strip: int) -> int:
    count = 0
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnpackError(f"cannot read archive {archive}", str(exc), "delete the file and fetch it again",
                          archive=str(archive)) from None
    with zf:
        for info in zf.infolist():
            new_name = _stripped(archive, info.filename, strip)
            if new_name is None:
                continue
            mode = (info.external_attr >> 16) & 0xFFFF
            ftype = stat.S_IFMT(mode) if mode else 0
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                raise _refuse(archive, info.filename, "device node, FIFO or socket")
            _check_parent_real(archive, info.filename, tmp, new_name)
            target = tmp / new_name
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif ftype == stat.S_IFLNK:
                    link = zf.read(info).decode("utf-8", "surrogateescape")
                    _check_symlink(archive, info.filename, new_name, link)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(link, target)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    os.chmod(target, _sanitise_mode(mode & 0o7777 if mode else 0o644, False))
            except (zipfile.BadZipFile, EOFError, ValueError, zlib.error, lzma.LZMAError,
                    NotImplementedError) as exc:  # a damaged deflate/xz stream, an unknown method
                raise UnpackError(f"cannot read archive {archive}", f"member {info.filename!r}: {exc}",
                                  "delete the file and fetch it again", archive=str(archive),
                                  member=info.filename) from None
            count += 1
    return count


def place_tree(tmp: Path, dest: Path) -> None:
    """Move the finished tree ``tmp`` to ``dest``.

    If ``dest`` is missing or an empty directory, ``tmp`` is renamed onto it.
    Otherwise each entry of ``tmp`` is moved into ``dest`` (directories merged
    recursively, files replaced) and ``tmp`` is removed.  ``tmp`` and ``dest``
    should be on one file system (make ``tmp`` beside ``dest``).
    """
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UnpackError(f"cannot place a tree at {dest}", "a file (not a directory) is in the way",
                          f"remove {dest}", dest=str(dest))
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, dest)
        return
    if not any(dest.iterdir()):
        dest.rmdir()
        os.rename(tmp, dest)
        return
    for entry in list(tmp.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            place_tree(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.rename(entry, target)
    shutil.rmtree(tmp, ignore_errors=True)


def safe_extract(archive: Path, dest: Path, strip_components: int = 1) -> None:
    """Extract ``archive`` into ``dest``; see the module docstring for the contract."""
    archive = Path(archive)
    dest = Path(dest)
    if strip_components < 0:
        raise UnpackError(f"cannot unpack {archive}", f"strip_components is {strip_components}",
                          "use 0 or more", archive=str(archive))
    if not archive.is_file():
        raise UnpackError(f"cannot unpack {archive}", "the file does not exist",
                          "fetch the source first", archive=str(archive))
    try:
        is_tar = tarfile.is_tarfile(archive)
    except _CORRUPT as exc:  # the compressed stream breaks before the first header
        raise _corrupt(archive, f"{type(exc).__name__}: {exc}") from None
    if is_tar:
        extractor = _extract_tar
    elif zipfile.is_zipfile(archive):
        extractor = _extract_zip
    else:
        raise UnpackError(f"cannot unpack {archive}",
                          "not a tar (plain, gz, bz2, xz) or zip archive",
                          "check the recipe's tarball URL points at an archive", archive=str(archive))
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name or 'tree'}.unpack-", dir=parent))
    try:
        logger.info("unpacking %s into %s (strip %d)", archive, dest, strip_components)
        count = extractor(archive, tmp, strip_components)
        _final_symlink_walk(archive, tmp)
        if count == 0:
            raise UnpackError(f"nothing to unpack from {archive}",
                              f"every member has at most {strip_components} path component(s)",
                              "lower strip_components in the recipe", archive=str(archive))
        place_tree(tmp, dest)
    except UnpackError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnpackError(f"cannot unpack {archive} into {dest}", str(exc),
                          "check free disk space and permissions", archive=str(archive)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("unpacked %d members of %s", count, archive.name)
