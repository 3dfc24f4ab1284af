"""A streaming reader of compressed tar files, for the restore's one pass over an artifact.

Contract:

- :func:`open_stream` opens a zstd, gzip or xz file (told apart by its magic bytes) and
  yields a :class:`TarStream`; with ``raw_sha256`` the file's bytes are hashed as they are
  read (by a reader thread, ahead of the caller).  When the block ends without error, the
  rest of the file is read (unless ``drain=False``), and a compressed
  stream that ends inside a frame (truncated), or a raw hash that differs, raises
  :class:`TarStreamError` (a ``ValueError``).
- :meth:`TarStream.members` yields :class:`Member` headers in order: ustar fields, pax
  extended headers (``path``, ``linkpath``, ``size``, ``mtime``) and GNU long names; global
  pax headers are skipped.  Every header's checksum is checked.  A member's data is read
  with :meth:`TarStream.data` (chunks as memoryviews, at most 1 MiB each) before the next
  member is asked for; unread data is skipped.
- Anything malformed (bad checksum, bad number, a stream ending early) raises
  ``TarStreamError`` or ``EOFError``: the caller turns both into its own rejection.

Why not :mod:`tarfile`: its stream mode costs more per member than unpacking a file costs
(``bench/bench_cache.py``: 0.49 s of the 0.98 s restore of 2,130 files went to it); this
reader does only what verified artifacts need.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import queue
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

CHUNK = 1024 * 1024
RAW_CHUNK = 256 * 1024  # compressed bytes per step of the reading thread
BLOCK = 512
_ZERO = bytes(BLOCK)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

REGULAR, DIRECTORY, SYMLINK = "file", "dir", "symlink"
_KINDS = {b"0": REGULAR, b"\0": REGULAR, b"7": REGULAR, b"5": DIRECTORY, b"2": SYMLINK}


class TarStreamError(ValueError):
    """The compressed stream or the tar inside it is damaged."""


@dataclass
class Member:
    name: str
    kind: str  # file | dir | symlink | "other: <type byte>"
    size: int
    mode: int
    mtime: float
    linkname: str


def _decompressor(magic: bytes) -> Callable[[], object]:
    if magic[:4] == ZSTD_MAGIC:
        import zstandard

        return lambda: zstandard.ZstdDecompressor().decompressobj()
    if magic[:2] == b"\x1f\x8b":
        return lambda: zlib.decompressobj(wbits=31)
    if magic[:6] == b"\xfd7zXZ\x00":
        return lambda: lzma.LZMADecompressor()
    raise TarStreamError("not a zstd, gzip or xz compressed file")


class _Producer(threading.Thread):
    """Reads, hashes and decompresses the file ahead of the reader, in its own thread (zstd,
    zlib, lzma and hashlib release the GIL), handing chunks over through a small queue."""

    def __init__(self, fh: IO[bytes], raw_hash: "hashlib._Hash | None", new: Callable[[], object]) -> None:
        super().__init__(name="hermitbuild-unpack", daemon=True)
        self._fh, self._hash, self._new = fh, raw_hash, new
        self.queue: "queue.Queue[bytes | BaseException | None]" = queue.Queue(maxsize=8)
        self.stop = threading.Event()

    def _put(self, item: "bytes | BaseException | None") -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            dobj = self._new()
            while not self.stop.is_set():
                raw = self._fh.read(RAW_CHUNK)
                if not raw:
                    if not getattr(dobj, "eof", True):
                        raise TarStreamError("the compressed stream ends early (the file is truncated)")
                    self._put(None)
                    return
                if self._hash is not None:
                    self._hash.update(raw)
                out = []
                while raw:
                    if getattr(dobj, "eof", False):  # another frame / gzip member follows
                        dobj = self._new()
                    out.append(dobj.decompress(raw))  # type: ignore[attr-defined]
                    raw = dobj.unused_data if getattr(dobj, "eof", False) else b""  # type: ignore[attr-defined]
                data = b"".join(out)
                if data:
                    self._put(data)
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)


class TarStream:
    """Decompressed bytes of an open file, read block-wise; see the module docstring."""

    def __init__(self, fh: IO[bytes], raw_hash: "hashlib._Hash | None") -> None:
        magic = fh.read(6)
        fh.seek(0)
        self._producer = _Producer(fh, raw_hash, _decompressor(magic))
        self._producer.start()
        self._buf = memoryview(b"")
        self._done = False
        self._left = 0  # unread data bytes of the current member

    def close(self) -> None:
        """Stop the reading thread (at the end, or when the caller gave up early)."""
        self._producer.stop.set()
        self._producer.join()

    # ---- the decompressed byte stream
    def _fill(self) -> bool:
        """The next decompressed chunk into the buffer; False at the end of the file."""
        if self._done:
            return False
        item = self._producer.queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._buf = memoryview(item)
        return True

    def _take(self, n: int) -> memoryview:
        if not self._buf and not self._fill():
            return memoryview(b"")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _exact(self, n: int) -> bytes:
        parts = []
        while n:
            got = self._take(n)
            if not got:
                raise EOFError("the tar stream ends inside a member")
            parts.append(bytes(got))
            n -= len(got)
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            got = self._take(n)
            if not got:
                raise EOFError("the tar stream ends inside a member")
            n -= len(got)

    def drain(self) -> None:
        """Read (and hash) the rest of the file."""
        while self._buf or self._fill():
            self._buf = memoryview(b"")

    # ---- members
    def members(self) -> Iterator[Member]:
        pax: dict[str, str] = {}
        long_name = long_link = None
        while True:
            block = self._exact(BLOCK) if self._buf or self._fill() else _ZERO
            if block == _ZERO:
                return  # end of archive (the second zero block and the padding are drained later)
            _check_sum(block)
            kind_byte = block[156:157]
            size = _number(block[124:136])
            if kind_byte in (b"x", b"g", b"L", b"K"):
                data = self._exact(size)
                self._skip(-size % BLOCK)
                if kind_byte == b"x":
                    pax = _pax_records(data)
                elif kind_byte == b"L":
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                elif kind_byte == b"K":
                    long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            name = _text(block[0:100])
            if block[257:263] == b"ustar\x00" and block[345:500].strip(b"\0"):
                name = _text(block[345:500]) + "/" + name
            mtime = float(pax["mtime"]) if "mtime" in pax else _number(block[136:148])
            if not 0 <= mtime < 1 << 40:  # also NaN; os.utime would raise OverflowError
                raise TarStreamError(f"implausible modification time {mtime!r} in a tar header")
            member = Member(name=pax.get("path", long_name or name),
                            kind=_KINDS.get(kind_byte, f"other: {kind_byte!r}"),
                            size=int(pax["size"]) if "size" in pax else size,
                            mode=_number(block[100:108]),
                            mtime=mtime,
                            linkname=pax.get("linkpath", long_link or _text(block[157:257])))
            pax, long_name, long_link = {}, None, None
            self._left = member.size if member.kind == REGULAR else 0
            yield member
            self._skip(self._left + (-member.size % BLOCK if member.kind == REGULAR else 0))

    def data(self) -> Iterator[memoryview]:
        """The current member's data, in chunks."""
        while self._left:
            got = self._take(min(self._left, CHUNK))
            if not got:
                raise EOFError("the tar stream ends inside a member's data")
            self._left -= len(got)
            yield got


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU) for large values
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.replace(b"\0", b" ").strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarStreamError(f"bad number {field!r} in a tar header") from None


def _check_sum(block: bytes) -> None:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    if stored != unsigned:
        signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
        if stored != signed:
            raise TarStreamError("bad tar header checksum (the archive is damaged)")


def _pax_records(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarStreamError("bad pax header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarStreamError("bad pax header record length") from None
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarStreamError("bad pax header record")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


@contextlib.contextmanager
def open_stream(path: Path, raw_sha256: str | None = None, drain: bool = True) -> Iterator[TarStream]:
    """A :class:`TarStream` over ``path``; the whole file is read (and checked) at the end,
    unless ``drain`` is false (a caller that wants only the first member)."""
    with open(path, "rb") as fh:
        raw_hash = hashlib.sha256() if raw_sha256 is not None else None
        stream = TarStream(fh, raw_hash)
        try:
            yield stream
            if drain:
                stream.drain()
        finally:
            stream.close()
        if raw_hash is not None and raw_hash.hexdigest() != raw_sha256:
            raise TarStreamError(f"its sha256 {raw_hash.hexdigest()[:16]}... differs from the recorded "
                                 f"{str(raw_sha256)[:16]}... (the file changed after it was stored)")
