"""Cache keys, artifacts (pack / verify / restore), the local store and the HTTP remote.

Contract:

Keys
  :func:`compute_key` returns ``(hex key, inputs)``.  ``inputs`` holds everything that
  determines a recipe's installed output and nothing else::

      {"format": 1,
       "recipe": canonical recipe definition (name, version, image, depends, install_root,
                 build_in_source, source_date_epoch, env, steps, variant; never the file path),
       "tree": tree_id(recipe)   # pins / override content + patches + syscall digest,
                                 # (below a recipe with ignores_syscalls: as if the table were empty)
       "image": image_id(recipe.image),
       "target": settings.target,
       "build_settings": {prefix, tools[, hermit_languages]},  # values baked into binaries
       "deps": {dependency: its key, ...}}                    # recursive

  The key is the sha256 of the canonical JSON of ``inputs`` (sorted keys, no spaces).
  Workspace paths (build_dir, root, cache_dir) and ``jobs`` never enter a key.  Step args
  and env values enter unexpanded (``{src}``, ``{build}`` stay placeholders).

Artifacts
  :func:`pack_artifact` writes a gzip'd tar: ``manifest.json`` first, then
  ``files/<relative path>`` for every directory, regular file and symlink under the stage
  root (paths are relative to it, i.e. to the install root).  The manifest holds the key,
  the inputs, the file list ``[{path, type, mode, size, sha256, target}]``, the creation
  time (UTC ISO) and the tool version.  The file is written atomically.
  :func:`restore_artifact` verifies the manifest (key, safe paths and link targets), every
  member against the manifest (type, size, sha256, nothing missing, nothing extra) while
  extracting into a private temp dir inside ``dest_root``; only when everything verified
  does it merge the files into ``dest_root`` (per-file atomic rename, overwriting same
  paths; missing directories are moved in whole).  A failure while merging rolls the
  already-moved files back.  So either ``dest_root`` is unchanged (and
  :class:`~hermitbuild.errors.ArtifactError` / :class:`~hermitbuild.errors.CacheError` is
  raised) or the whole artifact is in place.
  Writes never go through a symlink and never leave ``dest_root``: no member may lie
  under a symlink member, and a directory of ``dest_root`` that resolves outside it is
  refused.  Symlink targets themselves are data (absolute links and links leaving the
  install root are kept, with a warning when packed).

Local cache
  :class:`LocalCache`: ``<root>/<k[:2]>/<k>`` plus a ``<k>.sha256`` sidecar in
  ``sha256sum`` format.  ``put`` copies to a temp file in the same directory and renames
  under an exclusive ``flock`` on ``<root>/.lock``; an existing valid entry is kept.
  ``get`` checks the sha256 (hence the size) against the sidecar; a bad entry is logged, deleted and
  reported as a miss.  ``prune`` removes least recently used entries (mtime, touched on
  every hit) down to ``max_size`` bytes (0: unbounded); ``put`` prunes automatically when
  over the bound.

Remote cache
  :class:`RemoteCache`: plain HTTP(S): ``HEAD``/``GET``/``PUT`` on ``<base>/<key>`` and on
  ``<base>/<checksum_key(key)>``, a small object ``"<sha256 of the artifact>  <key>"`` whose
  name is itself 64 hex digits (so bazel-remote's ``/ac/`` accepts it).  The artifact is
  uploaded before its checksum and readers look at the checksum first, so a half-uploaded
  artifact is a miss; a download must match the checksum and carry the right manifest
  key.  Optional bearer token, timeouts and retries (none after a read timeout).  Network
  trouble never raises: it logs a warning, returns ``None``/``False`` and marks the remote as down for this process
  (``DOWN_SECONDS``), so every later recipe of the run falls back to building locally at
  once, without waiting again.  HTTP refusals (401/403/4xx) are warnings too, but do not
  mark the remote down.  Mode ``read`` never sends a ``PUT``.

:func:`fetch_artifact`, :func:`install_from_cache` and :func:`publish` are the glue the
build uses: local then remote lookup, verified restore (a bad artifact is discarded and
``None`` tells the caller to build), local store and optional push.
:func:`cache_cli` implements ``doit cache stats|list|prune|push|verify``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import fcntl
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, IO, Any, Callable, Iterator, Mapping, Sequence


from . import __version__
from .errors import ArtifactError, CacheError, ConfigError, HermitBuildError
from .recipe import Recipe, RecipeSet
from .fsutil import is_inside, sha256_file  # noqa: F401 (sha256_file: part of this API)
from .settings import Settings
from .settings import format_size
from .settings import parse_size as settings_parse_size

if TYPE_CHECKING:  # pragma: no cover
    import requests

logger = logging.getLogger(__name__)

KEY_FORMAT = 1
ARTIFACT_FORMAT = 1
MANIFEST_NAME = "manifest.json"
FILES_PREFIX = "files/"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
_MAX_MANIFEST = 256 * 1024 * 1024
_RESTORE_TMP_PREFIX = ".hermitbuild-restore-"
_TMP_SUFFIX = ".tmp"


# =========================================================================== helpers

def canonical_json(data: Any) -> str:
    """The one JSON rendering that keys are computed from."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def checksum_key(key: str) -> str:
    """The remote name of the checksum object of ``key``: itself 64 hex digits, so that stores
    which accept only sha256-shaped keys (bazel-remote's ``/ac/``) hold it too."""
    return hashlib.sha256(f"hermitbuild-checksum:{check_key(key)}".encode("ascii")).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` if it is 64 lower-case hex digits, else raise CacheError."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise CacheError(f"invalid cache key {key!r}",
                         "a cache key is the 64 lower-case hex digits of a sha256",
                         "copy the key from `doit cache list`")
    return key


def parse_size(text: str | int, field: str = "cache_max_size") -> int:
    """A size (see :func:`hermitbuild.settings.parse_size`); a ConfigError naming ``field`` if not."""
    try:
        return settings_parse_size(text)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}", f"write e.g. `{field}: 20G` (K, M, G, T suffixes; plain "
                          "number = bytes)", field=field) from None


# =========================================================================== keys

def recipe_definition(recipe: Recipe) -> dict[str, Any]:
    """The canonical, path-free definition of a recipe that enters its key."""
    return {
        "name": recipe.name,
        "version": recipe.version,
        "image": recipe.image,
        "depends": list(recipe.depends),
        "install_root": recipe.install_root,
        "build_in_source": recipe.build_in_source,
        "source_date_epoch": recipe.source_date_epoch,
        "env": [[k, v] for k, v in recipe.env],
        "steps": [{"name": s.name, "kind": s.kind, "args": list(s.args), "cwd": s.cwd,
                   "env": [[k, v] for k, v in s.env]} for s in recipe.steps],
        "variant": recipe.variant,
        # only when set, so that recipes without it keep their keys (and their cached artifacts)
        **({"drop_files": list(recipe.drop_files)} if recipe.drop_files else {}),
    }


def uses_placeholder(recipe: Recipe, name: str) -> bool:
    """Whether ``{name}`` appears in a step argument or an env value of ``recipe``."""
    mark = "{" + name + "}"
    texts = [v for _, v in recipe.env]
    for step in recipe.steps:
        texts.extend(step.args)
        texts.extend(v for _, v in step.env)
    return any(mark in t for t in texts)


def build_settings(settings: Settings, recipe: Recipe) -> dict[str, Any]:
    """The settings whose values end up inside the files ``recipe`` builds.

    prefix and tools are baked into every recipe's output; ``hermit_languages`` only
    reaches recipes that pass ``{hermit_languages}`` on (and, through the dependency
    keys, what is built on top of them), so changing it does not rebuild binutils."""
    out: dict[str, Any] = {"prefix": str(settings.prefix), "tools": str(settings.tools)}
    if uses_placeholder(recipe, "hermit_languages"):
        out["hermit_languages"] = list(settings.hermit_languages)
    return out


def compute_key(recipe: Recipe, recipes: RecipeSet, settings: Settings, *,
                tree_id: Callable[[Recipe], str],
                image_id: Callable[[str], str],
                empty_table_tree_id: Callable[[Recipe], str] | None = None) -> tuple[str, dict]:
    """(hex key, inputs) of ``recipe``; dependencies' keys are computed recursively (memoised).

    Below a recipe with ``ignores_syscalls`` every tree id comes from
    ``empty_table_tree_id`` (the tree as the empty syscall table leaves it; default
    ``tree_id``), so a table change does not reach that recipe's key."""
    memo: dict[tuple[str, bool], tuple[str, dict]] = {}
    images: dict[str, str] = {}

    def image_of(name: str) -> str:
        if name not in images:
            images[name] = str(image_id(name))
        return images[name]

    def key_of(rec: Recipe, chain: tuple[str, ...], blind: bool) -> tuple[str, dict]:
        if (rec.name, blind) in memo:
            return memo[rec.name, blind]
        if rec.name in chain:
            raise CacheError(f"dependency cycle while computing the key of '{rec.name}'",
                             " -> ".join((*chain, rec.name)), "remove one of these dependencies")
        below = blind or rec.ignores_syscalls
        deps = {dep: key_of(recipes[dep], (*chain, rec.name), below)[0] for dep in rec.depends}
        tree = (empty_table_tree_id or tree_id)(rec) if blind else tree_id(rec)
        inputs = {
            "format": KEY_FORMAT,
            "recipe": recipe_definition(rec),
            "tree": str(tree),
            "image": image_of(rec.image),
            "target": settings.target,
            "build_settings": build_settings(settings, rec),
            "deps": deps,
        }
        key = hashlib.sha256(canonical_json(inputs).encode("ascii")).hexdigest()
        memo[rec.name, blind] = (key, inputs)
        return memo[rec.name, blind]

    return key_of(recipe, (), False)


# =========================================================================== artifacts

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


@contextlib.contextmanager
def _tar_gz_writer(out: Path, compresslevel: int = 6) -> Iterator[tarfile.TarFile]:
    """A tar.gz stream writing to a temp file beside ``out``, renamed onto it when the block
    ends without error (fsynced, mode 0644); removed on error.  OSErrors become CacheError."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=_TMP_SUFFIX, dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
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


def pack_artifact(stage_root: Path, key: str, inputs: Mapping, out: Path,
                  *, compresslevel: int = 6) -> Path:
    """Pack everything under ``stage_root`` into the artifact ``out`` (atomic); return ``out``."""
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
            digest, size = sha256_file(e.abspath)
            item.update(sha256=digest, size=size)
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
    blob = json.dumps(manifest, sort_keys=True, indent=1, default=str).encode("utf-8")

    out = Path(out)
    with _tar_gz_writer(out, compresslevel) as tar:
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
    with _tar_gz_writer(out) as dst, _open_tar(Path(artifact)) as src:
        for member in src:
            if member.name == MANIFEST_NAME:
                ti = _tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o644, member.mtime)
                ti.size = len(blob)
                dst.addfile(ti, io.BytesIO(blob))
            elif member.isfile():
                dst.addfile(member, src.extractfile(member))
            else:
                dst.addfile(member)
    return out


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


@contextlib.contextmanager
def _open_tar(artifact: Path, drain: bool = False) -> Iterator[tarfile.TarFile]:
    """Stream-read a .tar.gz / .tar.xz; with ``drain``, read to the end of the compressed stream
    afterwards so a truncated file or a bad CRC is noticed even past the last member."""
    with open(artifact, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            comp: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb")
        elif magic == b"\xfd7zXZ\x00":
            comp = lzma.LZMAFile(raw, mode="rb")
        else:
            raise ValueError("not a gzip or xz compressed file")
        with comp, tarfile.open(fileobj=comp, mode="r|") as tar:
            yield tar
            if drain:
                while comp.read(_CHUNK):
                    pass


def _read_manifest_member(tar: tarfile.TarFile, artifact: Path) -> dict:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise _bad(artifact, "the first member is not manifest.json")
    if first.size > _MAX_MANIFEST:
        raise _bad(artifact, "manifest.json is implausibly large")
    fh = tar.extractfile(first)
    assert fh is not None
    data = fh.read()
    if len(data) != first.size:
        raise _bad(artifact, "manifest.json is truncated")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(artifact, f"manifest.json is not valid JSON: {exc}") from None


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError,
                ValueError)


def read_manifest(artifact: Path | str) -> dict:
    """The manifest of an artifact (only the first member is read; nothing is verified)."""
    artifact = Path(artifact)
    try:
        with _open_tar(artifact) as tar:
            return _read_manifest_member(tar, artifact)
    except ArtifactError:
        raise
    except _READ_ERRORS as exc:
        raise _bad(artifact, f"cannot read it: {exc}") from None


def _walk_members(artifact: Path, expected_key: str | None,
                  extract_to: Path | None) -> tuple[dict, list[dict]]:
    """Verify every member; when ``extract_to`` is given, write the entries there."""
    try:
        with _open_tar(artifact, drain=True) as tar:
            manifest = _read_manifest_member(tar, artifact)
            files = _check_manifest(manifest, artifact, expected_key)
            by_path = {f["path"]: f for f in files}
            seen: set[str] = set()
            while True:
                member = tar.next()
                if member is None:
                    break
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
                target = None if extract_to is None else os.path.join(extract_to, rel)
                kind = item["type"]
                if kind == "dir":
                    if not member.isdir():
                        raise _bad(artifact, f"{rel!r} should be a directory")
                    if target is not None:
                        os.mkdir(target, 0o700)
                        os.chmod(target, (item["mode"] & 0o777) | 0o700)
                elif kind == "symlink":
                    if not member.issym() or member.linkname != item["target"]:
                        raise _bad(artifact, f"{rel!r} should be a symlink to {item['target']!r}")
                    if target is not None:
                        os.symlink(item["target"], target)
                        with contextlib.suppress(OSError, NotImplementedError):
                            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
                else:
                    if not member.isreg() or member.size != item["size"]:
                        raise _bad(artifact, f"{rel!r} should be a file of {item['size']} bytes")
                    src = tar.extractfile(member)
                    assert src is not None
                    h = hashlib.sha256()
                    size = 0
                    out_fh = open(target, "xb") if target is not None else None
                    try:
                        while True:
                            chunk = src.read(_CHUNK)
                            if not chunk:
                                break
                            h.update(chunk)
                            size += len(chunk)
                            if out_fh is not None:
                                out_fh.write(chunk)
                    finally:
                        if out_fh is not None:
                            out_fh.close()
                    if size != item["size"] or h.hexdigest() != item["sha256"]:
                        raise _bad(artifact, f"content of {rel!r} does not match its sha256 "
                                             "in the manifest")
                    if target is not None:
                        os.chmod(target, item["mode"] & 0o777)
                        os.utime(target, (member.mtime, member.mtime))
            missing = [p for p in by_path if p not in seen]
            if missing:
                raise _bad(artifact, f"{len(missing)} entries of the manifest are missing "
                                     f"(e.g. {missing[0]!r}); the file is truncated or incomplete")
            return manifest, files
    except ArtifactError:
        raise
    except _READ_ERRORS as exc:
        if isinstance(exc, OSError) and extract_to is not None and exc.errno in (
                errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise CacheError(f"cannot restore artifact {artifact}", str(exc),
                             "free space or fix permissions of the install root") from None
        raise _bad(artifact, f"cannot read it: {exc}") from None


def verify_artifact(artifact: Path | str, expected_key: str | None = None) -> dict:
    """Fully verify an artifact without extracting it; return its manifest (ArtifactError if bad)."""
    manifest, _ = _walk_members(Path(artifact), expected_key, None)
    return manifest


def restore_artifact(artifact: Path, dest_root: Path, expected_key: str) -> list[str]:
    """Verify ``artifact`` and merge it into ``dest_root``; return the restored relative paths.

    The list holds every entry of the manifest (directories first, in manifest order).
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
        _, files = _walk_members(artifact, expected_key, stage)
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
    for item in files:
        dest = os.path.join(dest_root, item["path"])
        parent_real = os.path.realpath(os.path.dirname(dest))
        if not is_inside(parent_real, real_root):
            raise CacheError(f"cannot restore {item['path']} into {dest_root}",
                             f"its directory resolves to {parent_real}, outside the install root "
                             "(a symlink in the install root points elsewhere)",
                             "remove that symlink from the install root and re-run")
        exists = os.path.lexists(dest)
        if item["type"] == "dir":
            if exists and not os.path.isdir(dest):
                raise CacheError(f"cannot restore directory {item['path']} into {dest_root}",
                                 f"{dest} exists and is not a directory",
                                 f"remove {dest} and re-run")
        elif exists and os.path.isdir(dest) and not os.path.islink(dest):
            raise CacheError(f"cannot restore {item['path']} into {dest_root}",
                             f"{dest} is a directory, the artifact has a {item['type']} there",
                             f"remove {dest} and re-run")


def _merge(files: Sequence[dict], stage: Path, backup: Path, dest_root: Path) -> None:
    """Move the verified entries into place; undo everything on any failure.

    A directory missing in ``dest_root`` is moved over whole (one rename for its subtree);
    files over existing paths are replaced one by one, the old ones kept as hard links in
    ``backup`` until the end so they can be put back.
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


# =========================================================================== local cache

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
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(self.root / ".lock", "a+b")
        except OSError as exc:
            if not exclusive and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                yield  # a read-only cache directory (e.g. shared): reading needs no lock
                return
            raise CacheError(f"cannot use the local cache {self.root}", str(exc),
                             "set cache_dir (HERMITBUILD_CACHE_DIR) to a writable directory") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

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

    def put(self, key: str, artifact: Path, *, move: bool = False, replace: bool = False) -> Path:
        """Store ``artifact`` under ``key`` (its manifest must carry that key); return the cache path.

        An entry already there is kept unless ``replace`` (used to store an annotated copy)."""
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


# =========================================================================== remote cache

def _requests() -> Any:
    import requests

    return requests


class _Unreachable(Exception):
    pass


class RemoteCache:
    """An HTTP(S) artifact store: HEAD/GET/PUT on ``<base>/<key>``; see the module docstring."""

    def __init__(self, base_url: str, mode: str = "read", token: str = "",
                 timeout: tuple[float, float] = (5.0, 60.0), retries: int = 2,
                 backoff: float = 0.5) -> None:
        if mode not in ("read", "readwrite"):
            raise ConfigError(f"remote cache mode must be read or readwrite, got {mode!r}",
                              "set remote_cache_mode to read or readwrite (or off for no remote)",
                              field="remote_cache_mode")
        if not re.match(r"^https?://", base_url or ""):
            raise ConfigError(f"remote cache URL {base_url!r} is not http(s)",
                              "set remote_cache to e.g. https://cache.example.org/hermit",
                              field="remote_cache")
        self.base_url = base_url.rstrip("/")
        self.mode = mode
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        import requests  # only a remote needs it (an import costs 0.3 s on every doit run)

        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"hermitbuild/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # A remote found unreachable is skipped by every RemoteCache of this process for a while,
    # so a build of many recipes (one RemoteCache each) waits for a dead server only once.
    DOWN_SECONDS = 900.0
    _down_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"RemoteCache({self.base_url!r}, mode={self.mode!r})"

    @property
    def down(self) -> bool:
        """True while this remote is considered unreachable (skipped without a request)."""
        return RemoteCache._down_until.get(self.base_url, 0.0) > time.monotonic()

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            RemoteCache._down_until[self.base_url] = time.monotonic() + self.DOWN_SECONDS
        else:
            RemoteCache._down_until.pop(self.base_url, None)

    @classmethod
    def forget_outages(cls) -> None:
        """Forget every remote marked unreachable (for tests and long-lived processes)."""
        cls._down_until.clear()

    def url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"

    def checksum_url(self, key: str) -> str:
        return f"{self.base_url}/{checksum_key(key)}"

    def _request(self, method: str, url: str, body: Callable[[], Any] | None = None,
                 **kwargs: Any) -> "requests.Response":
        """One request with retries on network errors and 5xx; raises _Unreachable at the end."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                data = body() if body is not None else None
                try:
                    resp = self.session.request(method, url, data=data, timeout=self.timeout, **kwargs)
                finally:
                    if hasattr(data, "close"):
                        data.close()
            except _requests().RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, _requests().ReadTimeout):
                    break  # a server that does not answer in time will not answer faster now
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                resp.close()
                continue
            return resp
        raise _Unreachable(last)

    def _unreachable(self, what: str, exc: _Unreachable) -> None:
        self.down = True
        logger.warning("remote cache %s is unreachable (%s while %s); building locally and not "
                       "using the remote for the rest of this run", self.base_url, exc, what)

    _PROBE = "hermitbuild-doctor-probe"

    def probe(self) -> tuple[str, str]:
        """("ok" | "fail", what was found): reachable, readable and (readwrite) writable.

        Reads the checksum object of a key that does not exist (200 or 404 is fine) and, in
        readwrite mode, writes and deletes one small probe object.  Never prints the token."""
        try:
            resp = self._request("HEAD", self.checksum_url("0" * 64), allow_redirects=True)
            resp.close()
            if resp.status_code in (401, 403):
                return "fail", f"reading is refused (HTTP {resp.status_code})"
            if resp.status_code not in (200, 404):
                return "fail", f"reading answers HTTP {resp.status_code}"
            if self.mode != "readwrite":
                return "ok", "reachable and readable"
            url = f"{self.base_url}/{self._PROBE}"
            resp = self._request("PUT", url, body=lambda: b"probe\n", headers={"Content-Type": "text/plain"})
            resp.close()
            if resp.status_code not in (200, 201, 204):
                return "fail", f"readable, but writing is refused (HTTP {resp.status_code})"
            self._request("DELETE", url).close()
        except _Unreachable as exc:
            return "fail", f"unreachable ({exc})"
        return "ok", "reachable, readable and writable"

    def has(self, key: str) -> bool:
        if self.down:
            return False
        try:
            resp = self._request("HEAD", self.checksum_url(key), allow_redirects=True)
        except _Unreachable as exc:
            self._unreachable(f"checking {key[:12]}", exc)
            return False
        resp.close()
        if resp.status_code in (401, 403):
            logger.warning("remote cache %s refused access (HTTP %d): check the token",
                           self.base_url, resp.status_code)
        return resp.status_code == 200

    def get(self, key: str, dest: Path) -> Path | None:
        """Download ``key`` to ``dest`` (verified against its checksum object), or None on any trouble."""
        if self.down:
            return None
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        try:
            resp = self._request("GET", self.checksum_url(key))
            if resp.status_code == 404:
                logger.info("remote cache miss for %s", key[:12])
                return None
            if resp.status_code != 200:
                self._refused("reading", key, resp)
                return None
            fields = resp.text.split()
            if not fields or not _SHA_RE.match(fields[0]):
                logger.warning("remote cache: the checksum object of %s is malformed; ignoring it",
                               key[:12])
                return None
            expected = fields[0]
            for attempt in range(self.retries + 1):
                resp = self._request("GET", self.url(key), stream=True)
                if resp.status_code != 200:
                    if resp.status_code == 404:
                        logger.warning("remote cache: the checksum of %s exists but the artifact does not",
                                       key[:12])
                    else:
                        self._refused("reading", key, resp)
                    return None
                try:
                    h = hashlib.sha256()
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with resp, open(part, "wb") as out:
                        for chunk in resp.iter_content(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                    break
                except (_requests().RequestException, ConnectionError) as exc:
                    if attempt == self.retries:
                        raise _Unreachable(f"download interrupted: {exc}") from None
            if h.hexdigest() != expected:
                logger.warning("remote cache artifact %s is corrupt (sha256 %s..., expected %s...); "
                               "rejected, the recipe will be built", key[:12], h.hexdigest()[:16],
                               expected[:16])
                part.unlink()
                return None
            try:
                manifest_key = read_manifest(part).get("key")
            except ArtifactError as exc:
                manifest_key = None
                logger.warning("remote cache artifact %s is unreadable: %s", key[:12], exc.why)
            if manifest_key != key:
                if manifest_key is not None:
                    logger.warning("remote cache artifact %s carries key %s; rejected", key[:12],
                                   str(manifest_key)[:12])
                part.unlink()
                return None
            os.replace(part, dest)
            logger.info("downloaded %s from the remote cache", key[:12])
            return dest
        except _Unreachable as exc:
            self._unreachable(f"downloading {key[:12]}", exc)
        except OSError as exc:
            logger.warning("remote cache: cannot write %s: %s", part, exc)
        with contextlib.suppress(OSError):
            part.unlink()
        return None

    def put(self, key: str, path: Path) -> bool:
        """Upload an artifact and then its checksum object; False (never raises) when that did not work."""
        if self.mode != "readwrite":
            logger.info("remote cache is read-only; not pushing %s", key[:12])
            return False
        if self.down:
            return False
        path = Path(path)
        digest, size = sha256_file(path)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = self._request("PUT", self.url(key), body=lambda: open(path, "rb"), headers=headers)
            resp.close()
            if resp.status_code not in (200, 201, 204):
                self._refused("writing", key, resp)
                return False
            side = f"{digest}  {key}\n".encode("ascii")
            resp = self._request("PUT", self.checksum_url(key), body=lambda: side,
                                 headers={"Content-Type": "text/plain"})
            resp.close()
            if resp.status_code not in (200, 201, 204):
                self._refused("writing", key, resp)
                return False
        except _Unreachable as exc:
            self._unreachable(f"uploading {key[:12]}", exc)
            return False
        logger.info("pushed %s (%s) to the remote cache", key[:12], format_size(size))
        return True

    def _refused(self, what: str, key: str, resp: "requests.Response") -> None:
        hint = " (check the token)" if resp.status_code in (401, 403) else ""
        logger.warning("remote cache %s refused %s %s: HTTP %d%s", self.base_url, what, key[:12],
                       resp.status_code, hint)


# =========================================================================== glue

def open_caches(settings: Settings) -> tuple[LocalCache, RemoteCache | None]:
    """The local cache and (when the mode is not off) the remote cache of these settings."""
    cache_dir = settings.cache_dir or (settings.build_dir / "cache")
    local = LocalCache(cache_dir, parse_size(settings.cache_max_size))
    remote = None
    if settings.remote_cache_mode != "off":
        remote = RemoteCache(settings.remote_cache, settings.remote_cache_mode,
                             settings.remote_cache_token)
    return local, remote


def fetch_artifact(key: str, local: LocalCache, remote: RemoteCache | None) -> Path | None:
    """The artifact of ``key`` in the local cache, downloading it from the remote on a local miss."""
    path = local.get(key)
    if path is not None or remote is None:
        return path
    incoming = local.root / ".incoming"
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", dir=incoming))
    except OSError as exc:
        logger.warning("cannot use the local cache %s (%s); skipping the remote", local.root, exc)
        return None
    try:
        got = remote.get(key, tmp / key)
        if got is None:
            return None
        try:
            return local.put(key, got, move=True)
        except HermitBuildError as exc:
            logger.warning("could not store the downloaded artifact %s: %s", key[:12], exc)
            return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_from_cache(key: str, dest_root: Path, local: LocalCache,
                       remote: RemoteCache | None) -> list[str] | None:
    """Restore ``key`` into ``dest_root`` from the caches; None means "not cached, build it".

    A corrupt or mismatching artifact is logged, discarded from the local cache and reported
    as None.  Conflicts in ``dest_root`` (CacheError that is not ArtifactError) propagate.
    """
    path = fetch_artifact(key, local, remote)
    if path is None:
        return None
    try:
        return restore_artifact(path, dest_root, key)
    except ArtifactError as exc:
        logger.warning("%s\n  discarding it; the recipe will be built", exc)
        try:
            local.remove(key)
        except (CacheError, OSError) as err:
            logger.warning("could not delete the bad artifact %s: %s", path, err)
        return None


def publish(key: str, artifact: Path, local: LocalCache, remote: RemoteCache | None,
            push: bool = True) -> Path:
    """Store ``artifact`` locally and (when ``push`` and the remote is read-write) push it."""
    stored = local.put(key, artifact)
    if push and remote is not None and remote.mode == "readwrite":
        remote.put(key, stored)
    return stored


# =========================================================================== CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doit cache", description="Inspect and maintain the artifact cache.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="entries and size of the local cache (and the remote's settings)")
    sub.add_parser("list", help="every local entry: key, recipe, version, size, last use")
    pr = sub.add_parser("prune", help="delete least recently used entries down to the size bound")
    pr.add_argument("--max-size", help="bound to prune to (default: cache_max_size), e.g. 5G")
    pu = sub.add_parser("push", help="upload local entries the remote does not have")
    pu.add_argument("keys", nargs="*", help="keys to push (default: all local entries)")
    ve = sub.add_parser("verify", help="deep-check every local entry; bad ones are deleted")
    ve.add_argument("--keep", action="store_true", help="report bad entries but do not delete them")
    return p


def cache_cli(argv: list[str], settings: Settings) -> int:
    """``doit cache stats|list|prune|push|verify``; prints to stdout, returns an exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    local, remote = open_caches(settings)
    if args.command == "stats":
        st = local.stats()
        print(f"local cache:  {st['root']}")
        print(f"entries:      {st['entries']}")
        print(f"size:         {format_size(st['size'])} of {format_size(st['max_size'])} "
              f"({settings.cache_max_size})")
        print(f"remote cache: {settings.remote_cache or '-'} (mode {settings.remote_cache_mode}"
              + (", token set" if settings.remote_cache_token else "") + ")")
        return 0
    if args.command == "list":
        entries = local.list()
        for e in entries:
            try:
                m = read_manifest(e.path)
                recipe = m.get("inputs", {}).get("recipe", {})
                what = f"{recipe.get('name', '?')} {recipe.get('version', '')}".strip()
            except ArtifactError:
                what = "(unreadable)"
            used = _dt.datetime.fromtimestamp(e.last_used, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
            print(f"{e.key}  {format_size(e.size):>8}  {used}  {what}")
        print(f"{len(entries)} entries, {format_size(sum(e.size for e in entries))}")
        return 0
    if args.command == "prune":
        bound = parse_size(args.max_size, "--max-size") if args.max_size is not None else None
        removed = local.prune(bound)
        for key in removed:
            print(f"removed {key}")
        shown = bound if bound is not None else local.max_size
        print(f"pruned {len(removed)} entries; {format_size(local.total_size())} left "
              f"(bound {format_size(shown) if shown or bound is not None else 'none'})")
        return 0
    if args.command == "push":
        if remote is None or remote.mode != "readwrite":
            raise CacheError("cannot push: the remote cache is not writable",
                             f"remote_cache_mode is {settings.remote_cache_mode!r}",
                             "set HERMITBUILD_REMOTE_CACHE=<url> and HERMITBUILD_REMOTE_CACHE_MODE="
                             "readwrite (and the token variable if the server needs one)")
        keys = [check_key(k) for k in args.keys] or [e.key for e in local.list()]
        failed = pushed = skipped = 0
        for key in keys:
            path = local.get(key)
            if path is None:
                print(f"{key}  not in the local cache")
                failed += 1
                continue
            if remote.has(key):
                print(f"{key}  already on the remote")
                skipped += 1
                continue
            if remote.put(key, path):
                print(f"{key}  pushed")
                pushed += 1
            else:
                print(f"{key}  FAILED (see the warning above)")
                failed += 1
        print(f"pushed {pushed}, already there {skipped}, failed {failed}")
        return 1 if failed else 0
    # verify
    entries = local.list()
    bad = local.verify(remove=not args.keep)
    for key, problem in bad:
        print(f"{key}  BAD: {problem}" + ("" if args.keep else " (deleted)"))
    print(f"verified {len(entries)} entries: {len(entries) - len(bad)} good, {len(bad)} bad")
    return 1 if bad else 0
