"""Artifacts: pack, annotate, read, verify and restore (all or nothing) a recipe's files.

Contract: see :mod:`hermitbuild.cache` (Artifacts).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from .. import __version__
from ..errors import ArtifactError, CacheError, CommandError
from ..settings import format_size

logger = logging.getLogger(__name__)
from .keys import _KEY_RE, check_key
from .extract import TarExtract
from .tarstream import Member, TarStream, open_stream


ARTIFACT_FORMAT = 1
MANIFEST_NAME = "manifest.json"
FILES_PREFIX = "files/"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
_MAX_MANIFEST = 256 * 1024 * 1024
_RESTORE_TMP_PREFIX = ".hermitbuild-restore-"
_TMP_SUFFIX = ".tmp"



# --- artifacts

@dataclass(frozen=True)
class _StageEntry:
    path: str  # relative, posix
    type: str  # file | dir | symlink
    abspath: str
    mode: int
    mtime: int
    target: str = ""


def _scan_stage(stage_root: Path) -> list[_StageEntry]:
    out: list[_StageEntry] = []

    def walk(directory: str, rel: str) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            path = f"{rel}/{item.name}" if rel else item.name
            st = item.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(item.path)
                if not _link_target_ok(path, target):
                    raise CacheError(f"cannot pack {stage_root}/{path}: symlink target {target!r} "
                                     "is not a usable path", "it is empty or holds a NUL byte",
                                     "fix the install step that creates this link")
                if _link_leaves_root(path, target):
                    logger.warning("%s/%s is a symlink to %r, outside the install root; it is "
                                   "stored as is", stage_root, path, target)
                out.append(_StageEntry(path, "symlink", item.path, 0o777, int(st.st_mtime), target))
            elif stat.S_ISDIR(st.st_mode):
                out.append(_StageEntry(path, "dir", item.path, mode, int(st.st_mtime)))
                walk(item.path, path)
            elif stat.S_ISREG(st.st_mode):
                out.append(_StageEntry(path, "file", item.path, mode, int(st.st_mtime)))
            else:
                raise CacheError(f"cannot pack {stage_root}/{path}: not a file, directory or symlink",
                                 "artifacts hold only regular files, directories and symlinks",
                                 "remove the special file from the install step")

    walk(os.fspath(stage_root), "")
    return out


class _HashingReader(io.RawIOBase):
    """Reads a file while hashing it (so the packed bytes are the hashed bytes)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


ZSTD_LEVEL = 12  # bench/bench_cache.py: smaller than gzip -6 and packed at several MB/s per thread
# an incremental rebuild's artifact (a syscall table change): local, replaced by the next change;
# newlib's 9 MB pack in 0.17 s instead of 0.85-0.92 s, 24 % larger (the same files either way)
ZSTD_LEVEL_INCREMENTAL = 3
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@contextlib.contextmanager
def _artifact_writer(out: Path, level: int = ZSTD_LEVEL) -> Iterator[tarfile.TarFile]:
    """A tar.zst stream writing to a temp file beside ``out``, renamed onto it when the block
    ends without error (fsynced, mode 0644); removed on error.  OSErrors become CacheError.

    The zstd frame carries its content checksum; compression uses every core (the output
    does not depend on the number of threads)."""
    import zstandard

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=_TMP_SUFFIX, dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
            with cctx.stream_writer(raw, closefd=False) as zw:
                with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT,
                                  bufsize=_CHUNK) as tar:
                    yield tar
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CacheError(f"cannot write artifact {out}", str(exc),
                             "check free space and permissions of that directory") from None
        raise


def _hash_file(path: str) -> tuple[str, str, int]:
    """(sha256, sha1, size) of a file in one read (sha1 is what SPDX requires of files)."""
    h256, h1, size = hashlib.sha256(), hashlib.sha1(), 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                return h256.hexdigest(), h1.hexdigest(), size
            h256.update(chunk)
            h1.update(chunk)
            size += len(chunk)


def pack_artifact(stage_root: Path, key: str, inputs: Mapping, out: Path,
                  *, level: int = ZSTD_LEVEL,
                  describe: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None) -> Path:
    """Pack everything under ``stage_root`` into the artifact ``out`` (atomic); return ``out``.

    ``describe(file list)``: extra manifest fields computed from the files (the SBOM)."""
    stage_root = Path(stage_root)
    check_key(key)
    if not stage_root.is_dir():
        raise CacheError(f"cannot pack artifact {key[:12]}: {stage_root} is not a directory",
                         "the install step did not create the install root in the stage",
                         "check the recipe's install step installs into {install}")
    entries = _scan_stage(stage_root)
    manifest_files: list[dict[str, Any]] = []
    for e in entries:
        item: dict[str, Any] = {"path": e.path, "type": e.type, "mode": e.mode}
        if e.type == "file":
            digest, sha1, size = _hash_file(e.abspath)
            item.update(sha256=digest, sha1=sha1, size=size)
        elif e.type == "symlink":
            item["target"] = e.target
        manifest_files.append(item)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    manifest = {
        "format": ARTIFACT_FORMAT,
        "key": key,
        "inputs": dict(inputs),
        "files": manifest_files,
        "total_size": sum(f.get("size", 0) for f in manifest_files),
        "created": now.isoformat().replace("+00:00", "Z"),
        "tool": f"hermitbuild {__version__}",
    }
    if describe is not None:
        extra = dict(describe(manifest_files))
        clash = set(extra) & set(manifest)
        if clash:
            raise CacheError(f"cannot pack {key[:12]}: {', '.join(sorted(clash))} are fixed fields",
                             "a description may only add fields", "use another field name")
        manifest.update(extra)
    blob = json.dumps(manifest, sort_keys=True, indent=1, default=str).encode("utf-8")

    out = Path(out)
    with _artifact_writer(out, level) as tar:
        ti = _tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o644, int(now.timestamp()))
        ti.size = len(blob)
        tar.addfile(ti, io.BytesIO(blob))
        for e, item in zip(entries, manifest_files):
            name = FILES_PREFIX + e.path
            if e.type == "dir":
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, e.mode, e.mtime))
            elif e.type == "symlink":
                ti = _tarinfo(name, tarfile.SYMTYPE, 0o777, e.mtime)
                ti.linkname = e.target
                tar.addfile(ti)
            else:
                ti = _tarinfo(name, tarfile.REGTYPE, e.mode, e.mtime)
                ti.size = item["size"]
                with open(e.abspath, "rb") as fh:
                    reader = _HashingReader(fh)
                    tar.addfile(ti, reader)  # type: ignore[arg-type]
                if reader.hash.hexdigest() != item["sha256"] or reader.size != ti.size:
                    raise CacheError(f"cannot pack {e.abspath}: it changed while packing",
                                     "something is still writing into the stage",
                                     "re-run the build")
    logger.info("packed %s (%d entries, %s) into %s", key[:12], len(entries),
                format_size(out.stat().st_size), out)
    return out


def annotate_artifact(artifact: Path, extra: Mapping[str, Any], out: Path) -> Path:
    """Copy ``artifact`` to ``out`` (atomic) with ``extra`` merged into its manifest.

    Used to record facts learnt after packing (the smoke test's result) in the
    artifact itself.  The key, the inputs and every file stay as they are; the
    source artifact is verified first, so a corrupt one is never re-signed.
    """
    reserved = {"format", "key", "inputs", "files", "total_size"} & set(extra)
    if reserved:
        raise CacheError(f"cannot annotate {artifact}: {', '.join(sorted(reserved))} are fixed",
                         "annotations may only add facts, not change what the artifact is",
                         "use another field name")
    manifest = verify_artifact(artifact)
    manifest.update(extra)
    blob = json.dumps(manifest, sort_keys=True, indent=1, default=str).encode("utf-8")
    out = Path(out)
    try:
        with _artifact_writer(out) as dst, open_stream(Path(artifact)) as src:
            for member in src.members():
                kind = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE}.get(member.kind, tarfile.SYMTYPE)
                ti = _tarinfo(member.name, kind, member.mode, int(member.mtime))
                if member.name == MANIFEST_NAME:
                    ti.size = len(blob)
                    dst.addfile(ti, io.BytesIO(blob))
                elif member.kind == "file":
                    ti.size = member.size
                    dst.addfile(ti, _ChunkReader(src.data()))
                else:
                    ti.linkname = member.linkname
                    dst.addfile(ti)
    except _read_errors() as exc:  # changed under our feet since it was verified
        raise _bad(artifact, f"cannot read it: {exc}") from None
    return out


class _ChunkReader(io.RawIOBase):
    """Chunks (a member's data) as a readable file, for :meth:`tarfile.TarFile.addfile`."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all with n < 0), fewer only at the end: tarfile's copy loop takes a
        short read of a block for the end of the data ("unexpected end of data")."""
        parts: list[bytes] = []
        need = n if n is not None and n >= 0 else -1
        while need != 0:
            if not self._rest:
                nxt = next(self._chunks, None)
                if nxt is None:
                    break
                self._rest = nxt
            take = self._rest if need < 0 else self._rest[:need]
            parts.append(bytes(take))  # the reading thread may reuse its buffers
            self._rest = self._rest[len(take):]
            if need > 0:
                need -= len(take)
        return b"".join(parts)


def _tarinfo(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _link_target_ok(path: str, target: str) -> bool:
    """A link target is stored as data: it only has to be a non-empty path without NUL.

    Links may point anywhere (absolute links into the prefix, relative ones such as
    ``../../../lib/x``); safety comes from never writing *through* a link: a member may
    not lie under a symlink member, and a restore refuses directories that resolve
    outside the install root.
    """
    return bool(target) and "\x00" not in target and len(target) < 4096


def _link_leaves_root(path: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def _bad(artifact: Path | str, why: str) -> ArtifactError:
    return ArtifactError(f"artifact {artifact} rejected", why,
                         "it was not used; the cache entry is discarded and the recipe rebuilt "
                         "(run `doit cache verify` to check the whole cache)",
                         artifact=str(artifact))


def _check_manifest(manifest: Any, artifact: Path | str, expected_key: str | None) -> list[dict]:
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise _bad(artifact, "manifest.json is not a format-1 hermitbuild manifest")
    if expected_key is not None and manifest.get("key") != expected_key:
        raise _bad(artifact, f"manifest key {str(manifest.get('key'))[:16]}... does not match the "
                             f"expected key {expected_key[:16]}...")
    if not isinstance(manifest.get("key"), str) or not _KEY_RE.match(manifest["key"]):
        raise _bad(artifact, "manifest key is not a sha256 hex string")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise _bad(artifact, "manifest has no file list")
    types: dict[str, str] = {}
    for item in files:
        if not isinstance(item, dict):
            raise _bad(artifact, "manifest file entry is not a mapping")
        path, kind = item.get("path"), item.get("type")
        if (not isinstance(path, str) or not path or "\x00" in path or path.startswith("/")
                or posixpath.normpath(path) != path or path == ".." or path.startswith("../")
                or path.startswith(_RESTORE_TMP_PREFIX)):
            raise _bad(artifact, f"unsafe path {path!r} in the manifest")
        if path in types:
            raise _bad(artifact, f"path {path!r} appears twice in the manifest")
        parent = posixpath.dirname(path)
        if parent and types.get(parent) != "dir":
            raise _bad(artifact, f"{path!r} is listed before (or without) its directory {parent!r}")
        if not isinstance(item.get("mode"), int):
            raise _bad(artifact, f"{path!r} has no mode")
        if kind == "file":
            if (not isinstance(item.get("sha256"), str) or not _SHA_RE.match(item["sha256"])
                    or not isinstance(item.get("size"), int) or item["size"] < 0):
                raise _bad(artifact, f"{path!r} lacks a valid sha256/size")
        elif kind == "symlink":
            target = item.get("target")
            if not isinstance(target, str) or not _link_target_ok(path, target):
                raise _bad(artifact, f"symlink {path!r} has an unusable target {target!r}")
        elif kind != "dir":
            raise _bad(artifact, f"{path!r} has unknown type {kind!r}")
        types[path] = kind
    return files


def _manifest_member(stream: TarStream, artifact: Path, members: Iterator[Member] | None = None) -> dict:
    """The first member, which must be manifest.json, parsed."""
    first = next(members if members is not None else stream.members(), None)
    if first is None or first.name != MANIFEST_NAME or first.kind != "file":
        raise _bad(artifact, "the first member is not manifest.json")
    if first.size > _MAX_MANIFEST:
        raise _bad(artifact, "manifest.json is implausibly large")
    try:
        return json.loads(b"".join(stream.data()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(artifact, f"manifest.json is not valid JSON: {exc}") from None


_BASE_READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError, ValueError)


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged artifact can raise (zstandard is imported only when used)."""
    import zstandard

    return _BASE_READ_ERRORS + (zstandard.ZstdError,)


def read_manifest(artifact: Path | str) -> dict:
    """The manifest of an artifact (only the first member is read; nothing is verified)."""
    artifact = Path(artifact)
    try:
        with open_stream(artifact, drain=False) as stream:
            return _manifest_member(stream, artifact)
    except ArtifactError:
        raise
    except _read_errors() as exc:
        raise _bad(artifact, f"cannot read it: {exc}") from None


def _walk_members(artifact: Path, expected_key: str | None, extract_to: Path | None,
                  raw_sha256: str | None = None) -> tuple[dict, list[dict]]:
    """Verify every member; when ``extract_to`` is given, write the entries there.

    ``raw_sha256``: the recorded sha256 of the whole file, checked in the same pass."""
    try:
        with open_stream(artifact, raw_sha256) as stream, \
                (TarExtract(extract_to) if extract_to is not None else contextlib.nullcontext()) as out:
            members = stream.members()
            manifest = _manifest_member(stream, artifact, members)
            files = _check_manifest(manifest, artifact, expected_key)
            by_path = {f["path"]: f for f in files}
            seen: set[str] = set()
            for member in members:
                if not member.name.startswith(FILES_PREFIX):
                    raise _bad(artifact, f"unexpected member {member.name!r}")
                rel = member.name[len(FILES_PREFIX):].rstrip("/")
                item = by_path.get(rel)
                if item is None:
                    raise _bad(artifact, f"member {rel!r} is not in the manifest")
                if rel in seen:
                    raise _bad(artifact, f"member {rel!r} appears twice")
                parent = posixpath.dirname(rel)
                if parent and parent not in seen:
                    raise _bad(artifact, f"member {rel!r} comes before its directory")
                seen.add(rel)
                _one_member(artifact, stream, member, item, rel, out)
            missing = [p for p in by_path if p not in seen]
            if missing:
                raise _bad(artifact, f"{len(missing)} entries of the manifest are missing "
                                     f"(e.g. {missing[0]!r}); the file is truncated or incomplete")
            return manifest, files
    except ArtifactError:
        raise
    except CommandError as exc:  # tar could not write the stage (disk full, permissions)
        raise CacheError(f"cannot restore artifact {artifact}", exc.why,
                         "free space or fix permissions of the install root") from None
    except _read_errors() as exc:
        raise _bad(artifact, f"cannot read it: {exc}") from None


def _one_member(artifact: Path, stream: TarStream, member: Member, item: dict, rel: str,
                out: TarExtract | None) -> None:
    """Check one member against its manifest entry (and hand it to ``out``: see
    :mod:`.extract` for what reaches the disk, and when)."""
    kind = item["type"]
    mtime = int(member.mtime)
    if kind == "dir":
        if member.kind != "dir":
            raise _bad(artifact, f"{rel!r} should be a directory")
        if out is not None:
            out.directory(rel, (item["mode"] & 0o777) | 0o700, mtime)
    elif kind == "symlink":
        if member.kind != "symlink" or member.linkname != item["target"]:
            raise _bad(artifact, f"{rel!r} should be a symlink to {item['target']!r}")
        if out is not None:
            out.symlink(rel, item["target"], mtime)
    else:
        if member.kind != "file" or member.size != item["size"]:
            raise _bad(artifact, f"{rel!r} should be a file of {item['size']} bytes")
        h = hashlib.sha256()
        if out is not None:
            out.file(rel, item["mode"] & 0o777, mtime, member.size)
        for chunk in stream.data():
            h.update(chunk)
            if out is not None:
                out.data(chunk)
        if h.hexdigest() != item["sha256"]:
            raise _bad(artifact, f"content of {rel!r} does not match its sha256 in the manifest")


def verify_artifact(artifact: Path | str, expected_key: str | None = None) -> dict:
    """Fully verify an artifact without extracting it; return its manifest (ArtifactError if bad)."""
    manifest, _ = _walk_members(Path(artifact), expected_key, None)
    return manifest
