"""Writing a restore's entries into its private stage directory through one ``tar -x`` process.

Contract:

- :class:`TarExtract` ``(dest)`` is a context manager around one GNU ``tar -x -C dest`` child
  (started through :func:`hermitbuild.runner.feeding`): :meth:`~TarExtract.directory`,
  :meth:`~TarExtract.symlink` and :meth:`~TarExtract.file` (then :meth:`~TarExtract.data`
  for its bytes) add one entry each.  When the block ends without error the archive is ended
  and tar waited for; a failing tar raises :class:`~hermitbuild.errors.CommandError` with its
  output.  When the block raises, tar is killed: ``dest`` holds an unknown part of the entries,
  and the caller discards it (a restore's stage directory always is, then).
- Only headers written here reach tar: plain ustar headers (name, mode, size, mtime, type,
  link target) and pax records for what ustar cannot hold (long or non-ASCII names, sizes of
  8 GiB and more).  Nothing of the artifact's own headers is passed on, so no record that tar
  honours and the verifier does not (``GNU.sparse.name``, ``uid``...) can steer a write.
- The caller adds an entry only after checking it against the manifest (a relative, normalised
  path under a directory entry added before, never under a symlink) and hands the content on
  as it verifies it; a file whose content then fails its sha256 fails the whole restore.
- Nothing is replaced (``--keep-old-files``: the stage starts empty). Modes are the manifest's
  (``--same-permissions``: no umask), owners the invoking user's
  (``--no-same-owner``); mtimes as given.

Why: ``bench/bench_cache.py`` compares the restore with ``tar -x`` of the same bytes; creating
thousands of small files from Python cost as much again as the floor.  With tar creating them
in its own process, the verifier (parsing, sha256) and the file system work run side by side.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import IO

from ..runner import feeding

BLOCK = 512
_FLUSH = 1024 * 1024
_USTAR_MAX = 8 ** 11  # largest size / mtime an 11-digit octal field holds


def _pax_record(key: str, value: bytes) -> bytes:
    body = key.encode() + b"=" + value + b"\n"
    n = len(body) + 2
    while len(str(n)) + 1 + len(body) != n:
        n += 1
    return str(n).encode() + b" " + body


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ustar(name: bytes, kind: bytes, mode: int, size: int, mtime: int, link: bytes) -> bytes:
    block = bytearray(BLOCK)
    block[0:len(name)] = name
    block[100:108] = b"%07o\0" % (mode & 0o7777)
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"%011o\0" % mtime
    block[148:156] = b"        "
    block[156:157] = kind
    block[157:157 + len(link)] = link
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def header(name: str, kind: bytes, mode: int, mtime: int, size: int = 0, link: str = "") -> bytes:
    """The tar header (pax extended header first, when needed) of one entry."""
    bname = name.encode("utf-8", "surrogateescape")
    blink = link.encode("utf-8", "surrogateescape")
    records = []
    if len(bname) > 100 or not bname.isascii():
        records.append(_pax_record("path", bname))
        bname = b"././@PaxPath"
    if len(blink) > 100 or not blink.isascii():
        records.append(_pax_record("linkpath", blink))
        blink = b"././@PaxLink"
    if size >= _USTAR_MAX:
        records.append(_pax_record("size", str(size).encode()))
        size_field = 0
    else:
        size_field = size
    if not 0 <= mtime < _USTAR_MAX:
        records.append(_pax_record("mtime", str(mtime).encode()))
        mtime = 0
    head = b""
    if records:
        if not (_is_utf8(name) and _is_utf8(link)):  # names that are not UTF-8 go as raw bytes
            records.insert(0, _pax_record("hdrcharset", b"BINARY"))
        data = b"".join(records)
        head = _ustar(b"././@PaxHeader", b"x", 0o644, len(data), 0, b"") + data + bytes(-len(data) % BLOCK)
    return head + _ustar(bname, kind, mode, size_field, mtime, blink)


class TarExtract:
    """See the module docstring."""

    def __init__(self, dest: Path | str) -> None:
        self._dest = str(dest)
        self._buf = bytearray()
        self._left = 0  # bytes of the current file still to come
        self._pad = 0
        self._cm: contextlib.AbstractContextManager[IO[bytes]] | None = None
        self._pipe: IO[bytes] | None = None

    def __enter__(self) -> "TarExtract":
        self._cm = feeding(["tar", "-x", "-f", "-", "-C", self._dest, "--same-permissions",
                            "--no-same-owner", "--keep-old-files"],
                           fix="install GNU tar (Debian: tar), which restores write with")
        self._pipe = self._cm.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        assert self._cm is not None
        if exc_type is None:
            try:
                if self._left:
                    raise ValueError("TarExtract closed inside a file's data")
                self._buf += bytes(2 * BLOCK)
                self._flush()
            except BaseException as err:
                self._cm.__exit__(type(err), err, err.__traceback__)
                raise
        return self._cm.__exit__(exc_type, exc, tb)

    def _flush(self) -> None:
        assert self._pipe is not None
        if self._buf:
            self._pipe.write(self._buf)
            self._buf = bytearray()

    def _add(self, data: bytes | memoryview) -> None:
        if len(self._buf) + len(data) > _FLUSH:
            self._flush()
            if len(data) > _FLUSH:
                assert self._pipe is not None
                self._pipe.write(data)
                return
        self._buf += data

    def directory(self, rel: str, mode: int, mtime: int) -> None:
        self._add(header(rel + "/", b"5", mode, mtime))

    def symlink(self, rel: str, target: str, mtime: int) -> None:
        self._add(header(rel, b"2", 0o777, mtime, link=target))

    def file(self, rel: str, mode: int, mtime: int, size: int) -> None:
        """Start a regular file of ``size`` bytes; :meth:`data` brings them."""
        self._add(header(rel, b"0", mode, mtime, size))
        self._left, self._pad = size, -size % BLOCK
        if not size:
            self._left = self._pad = 0

    def data(self, chunk: bytes | memoryview) -> None:
        if len(chunk) > self._left:
            raise ValueError("more data than the file's size")
        self._add(chunk)
        self._left -= len(chunk)
        if not self._left and self._pad:
            self._add(bytes(self._pad))
            self._pad = 0
