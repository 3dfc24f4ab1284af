"""The content digest of a source directory (an override), cheap when nothing changed.

Contract:
- :func:`dir_digest` ``(root, cache_file=None)`` is the sha256 (hex) of a directory tree:
  every path (sorted, depth first), each file's bytes and executable bit, each symlink's
  target, every directory; ``.git`` (at any depth) skipped; sockets, fifos and devices
  ignored.  The value depends on content only, never on where ``root`` is or on times.
- With ``cache_file`` it is cheap on a tree that did not change, in two layers:

  1. the *listing fingerprint*: one ``find`` (through :mod:`hermitbuild.runner`) prints
     every entry's ctime, mtime, type, size, inode, mode, path and link target; its
     sha256 and the digest it gave are kept in ``<cache_file>.fingerprint``.  The same
     fingerprint for the same root gives the kept digest without reading a file in
     Python: a GCC tree (121,000 entries) costs one ``find``, not a Python walk.  An
     edit that keeps size and mtime still moves the ctime (no program can set it), so it
     changes the fingerprint;
  2. otherwise per-file digests in ``cache_file`` (JSON), reused while a file's (size,
     mtime, ctime, inode) are unchanged; only changed files are read again.

  Neither layer keeps what was changed in the last ``_RACY_NS`` (2 s): an edit in the
  same clock tick as the hashing would leave the stat unchanged (git's "racy" files).
- Read-only mode (:func:`digest_caches_read_only`, doit's uptodate checks): no file is
  written; what would be is kept until :func:`write_pending_digest_caches` (the next
  action).  Cache files are caches only: unreadable ones are ignored, failed writes logged.
- With a watcher (:mod:`hermitbuild.treewatch`, the ``override_watch`` setting) there is a layer
  before both: the digest the watcher kept for its current generation, with no listing at all.
  A digest computed after the watcher gave generation G is recorded for G unless the listing
  shows a hard-linked regular file (an edit through the other link would not be seen).
- :func:`prefetch_listings` takes several roots' listings side by side (0.73 s instead of 1.04 s for
  GCC, binutils and libhermit here); each is used once.  The doit entry point names the overrides with
  :func:`list_together` (a syscall command names only the overrides of the trees it edits); the first
  :func:`override_digest` of the run takes them.
- :func:`tree_names` is the sha256 of a tree's sorted relative paths only (what cmake's globs
  see; an incremental rebuild re-runs cmake when it changed).
- :func:`hash_overrides_once_per_run`: from then on :func:`override_digest` hashes each
  directory once per process (one doit run); an edit during the run is seen by the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

from . import treewatch
from .errors import CommandError
from .fsutil import RACY_SECONDS, read_json, sha256_file, write_atomic
from .runner import output_bytes

logger = logging.getLogger(__name__)

SKIP_NAMES = frozenset({".git"})
_RACY_NS = int(RACY_SECONDS * 1e9)  # files modified this recently are never taken from a digest cache
FINGERPRINT_FORMAT = 2
# ctime first: it is never older than any other change of the entry, so the newest ctime
# says whether the listing is racy; fields end in NUL so that no name can fake a field;
# the link count last (a hard-linked file keeps a tree from being trusted to its watcher)
_FIND_FORMAT = r"%C@ %T@ %y %s %i %m %n\0%P\0%l\0"
# a regular file with more than one link; a name that looks like one only makes this wary
_HARD_LINKED = re.compile(rb"(?:\A|\0)[0-9.+-]+ [0-9.+-]+ f \d+ \d+ [0-7]+ (?!1\0)\d+\0")

_READ_ONLY = False  # inside uptodate checks: the digest caches are read, never written
_PENDING: dict[Path, dict] = {}  # what those checks would have written
_RUN_DIGESTS: dict[str, str] | None = None  # directory -> digest, once per doit run


def walk(root: Path) -> Iterator[tuple[str, os.DirEntry]]:
    """(relative path, entry) for everything under ``root`` except ``.git``, sorted, depth first."""
    stack = [("", root)]
    while stack:
        prefix, directory = stack.pop()
        with os.scandir(directory) as it:
            entries = sorted((e for e in it if e.name not in SKIP_NAMES), key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((rel + "/", Path(entry.path)))
        stack.extend(reversed(subdirs))


def tree_names(src: Path) -> str:
    """sha256 of the relative paths of everything in a prepared tree (:func:`walk`'s order,
    ``.git`` left out): what cmake's globs see.  Contents do not enter (make sees those by
    their mtimes)."""
    names = "\0".join(rel for rel, _ in walk(src))
    return hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Listing:
    """What one ``find`` of a tree said."""

    fingerprint: str  # sha256 of the listing
    racy: bool  # an entry changed in the last 2 s
    hard_links: bool  # a regular file has more than one link


def listing_fingerprint(root: Path) -> Listing | None:
    """The :class:`Listing` of ``root``, or None when ``find`` cannot list it (the caller
    hashes the slow way)."""
    argv = ["find", str(root), "-mindepth", "1"]
    for name in sorted(SKIP_NAMES):
        argv += ["-name", name, "-prune", "-o"]
    argv += ["-printf", _FIND_FORMAT]
    try:
        data = output_bytes(argv)
    except CommandError as exc:
        logger.debug("cannot list %s with find: %s", root, exc)
        return None
    ctimes = data.split(b"\0")[0:-1:3]
    racy = False
    if ctimes:
        # ctimes of one era have the same number of digits, so the byte-wise maximum is the
        # newest; any other form is taken as racy (nothing kept, nothing wrong)
        seconds, _, fraction = max(ctimes).split(b" ", 1)[0].partition(b".")
        if len(seconds) != 10 or not (seconds + fraction).isdigit():
            racy = True
        else:
            newest = int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, b"0"))
            racy = time.time_ns() - newest <= _RACY_NS
    return Listing(hashlib.sha256(data).hexdigest(), racy, _HARD_LINKED.search(data) is not None)


_LISTINGS: dict[str, Listing | None] = {}  # root -> listing, taken ahead by prefetch_listings
_STATUSES: dict[str, treewatch.Status | None] = {}  # root -> its watcher's word, asked ahead
_WANTED: list[Path] = []  # roots whose listings the first override digest takes side by side


def list_together(roots: Iterable[Path]) -> None:
    """Say which roots' listings to take together when the first override digest is needed
    (nothing runs now: doit's task creators call this, and `doit list` needs no listing)."""
    _WANTED[:] = [Path(r) for r in roots]


def prefetch_listings(roots: Iterable[Path]) -> None:
    """Ask the watchers of ``roots`` (:mod:`hermitbuild.treewatch`), then take the listings of
    those whose watcher kept no digest, all at once (one ``find`` each, side by side: the
    processes overlap on the cores and the disk); the next :func:`dir_digest` of each root
    uses its answer and listing once."""
    wanted = [Path(r) for r in dict.fromkeys(str(r) for r in roots) if Path(r).is_dir()]
    if not wanted:
        return
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        for root, status in zip(wanted, pool.map(treewatch.ask, wanted)):
            _STATUSES[str(root)] = status
        unknown = [r for r in wanted if _STATUSES[str(r)] is None or _STATUSES[str(r)].digest is None]
        for root, listing in zip(unknown, pool.map(listing_fingerprint, unknown)):
            _LISTINGS[str(root)] = listing


def _fingerprint_file(cache_file: Path) -> Path:
    return cache_file.with_name(cache_file.name + ".fingerprint")


def dir_digest(root: Path, cache_file: Path | None = None) -> str:
    """Content hash of a directory tree; see the module docstring."""
    if cache_file is None:
        return _walk_digest(root, None)
    # the watcher first (before any listing: what changes after its answer moves its generation)
    status = _STATUSES.pop(str(root)) if str(root) in _STATUSES else treewatch.ask(root)
    if status is not None and status.digest is not None:
        _LISTINGS.pop(str(root), None)
        return status.digest
    listing = _LISTINGS.pop(str(root)) if str(root) in _LISTINGS else listing_fingerprint(root)
    digest = None
    if listing is not None:
        kept = read_json(_fingerprint_file(cache_file)) or {}
        if (kept.get("format") == FINGERPRINT_FORMAT and kept.get("root") == str(root)
                and kept.get("fingerprint") == listing.fingerprint and isinstance(kept.get("digest"), str)):
            digest = kept["digest"]
    if digest is None:
        digest = _walk_digest(root, cache_file)
        if listing is not None and not listing.racy:
            _store(_fingerprint_file(cache_file), {"format": FINGERPRINT_FORMAT, "root": str(root),
                                                   "fingerprint": listing.fingerprint, "digest": digest})
    if status is not None and listing is not None and not listing.hard_links:
        treewatch.record(status, digest)
    return digest


def _walk_digest(root: Path, cache_file: Path | None) -> str:
    cache: dict[str, list] = {}
    if cache_file is not None:
        data = read_json(cache_file) or {}
        if data.get("root") == str(root) and isinstance(data.get("files"), dict):
            cache = data["files"]
    fresh: dict[str, list] = {}
    now = time.time_ns()
    h = hashlib.sha256()
    for rel, entry in walk(root):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            h.update(f"l\0{rel}\0{os.readlink(entry.path)}\n".encode("utf-8", "surrogateescape"))
        elif stat.S_ISDIR(st.st_mode):
            h.update(f"d\0{rel}\n".encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            hit = cache.get(rel)
            if hit is not None and hit[:4] == key:
                digest = hit[4]
            else:
                digest = sha256_file(entry.path)[0]
            if now - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
                fresh[rel] = key + [digest]
            mode = "x" if st.st_mode & 0o111 else "-"
            h.update(f"f\0{rel}\0{mode}\0{digest}\n".encode("utf-8", "surrogateescape"))
        # sockets, fifos, devices: not part of a source tree, ignored
    if cache_file is not None and fresh != cache:
        _store(cache_file, {"root": str(root), "files": fresh})
    return h.hexdigest()


def _store(cache_file: Path, data: dict) -> None:
    if _READ_ONLY:
        _PENDING[cache_file] = data
    else:
        _write_digest_cache(cache_file, data)


def _write_digest_cache(cache_file: Path, data: dict) -> None:
    try:
        write_atomic(cache_file, json.dumps(data))
    except OSError as exc:  # a cache only
        logger.debug("cannot write %s: %s", cache_file, exc)


@contextlib.contextmanager
def digest_caches_read_only() -> Iterator[None]:
    """Within the block, :func:`dir_digest` writes no file (doit's uptodate checks must not
    change anything); what it would write waits for :func:`write_pending_digest_caches`."""
    global _READ_ONLY
    before, _READ_ONLY = _READ_ONLY, True
    try:
        yield
    finally:
        _READ_ONLY = before


def write_pending_digest_caches() -> None:
    """Write what read-only digest computations left pending (an action calls this)."""
    while _PENDING:
        cache_file, data = _PENDING.popitem()
        _write_digest_cache(cache_file, data)


def hash_overrides_once_per_run() -> None:
    """From now on, hash each directory once in this process (a doit run).

    doit checks every task's key before running it, and each key needs the override
    trees of its dependencies (a GCC tree is 121,000 entries): hashing each once per run
    keeps an up-to-date `doit toolchain` with overrides in the time of one listing each.
    An override edited while doit runs is seen by the next run."""
    global _RUN_DIGESTS
    if _RUN_DIGESTS is None:
        _RUN_DIGESTS = {}


def override_digest(override: Path, cache: Path) -> str:
    """:func:`dir_digest` of an override, once per run after :func:`hash_overrides_once_per_run`."""
    if _WANTED:
        roots = list(_WANTED)
        _WANTED.clear()
        prefetch_listings(roots)
    if _RUN_DIGESTS is None:
        return dir_digest(override, cache)
    key = str(override)
    if key not in _RUN_DIGESTS:
        _RUN_DIGESTS[key] = dir_digest(override, cache)
    return _RUN_DIGESTS[key]
