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
  :func:`pack_artifact` writes a zstd-compressed tar (one frame with its content checksum;
  older tar.gz and tar.xz artifacts are still read): ``manifest.json`` first, then
  ``files/<relative path>`` for every directory, regular file and symlink under the stage
  root (paths are relative to it, i.e. to the install root).  The manifest holds the key,
  the inputs, the file list ``[{path, type, mode, size, sha256, target}]``, the creation
  time (UTC ISO) and the tool version.  The file is written atomically, at zstd level
  ``ZSTD_LEVEL`` (12), or ``ZSTD_LEVEL_INCREMENTAL`` (3) for an incremental rebuild's: the
  level changes the bytes, never the files, so it is not part of the key.
  :func:`restore_artifact` verifies the manifest (key, safe paths and link targets), every
  member against the manifest (type, size, sha256, nothing missing, nothing extra) while
  extracting into a private temp dir inside ``dest_root``; only when everything verified
  does it merge the files into ``dest_root`` (per-file atomic rename, overwriting same
  paths, but keeping a file that already has the same mode and content, mtime included;
  missing directories are moved in whole).  Given the file's recorded sha256, it
  checks that too in the same read (one pass over the bytes: hash, decompress, verify,
  unpack).  The files are created by one GNU ``tar -x`` process fed only headers the restore
  writes itself, for entries already checked (:mod:`.extract`).  A failure while merging rolls the
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
  reported as a miss.  ``lookup`` returns the path and the recorded sha256 without reading
  the file, for a caller that checks the digest while reading it anyway (the restore).  ``prune`` removes least recently used entries (mtime, touched on
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

:func:`locate_artifact`, :func:`fetch_artifact`, :func:`install_from_cache` and
:func:`publish` are the glue the build uses: local then remote lookup (a download is stored
with the digest it was verified against, not hashed again), verified one-pass restore (a bad artifact is discarded and
``None`` tells the caller to build), local store and optional push.
:func:`cache_cli` implements ``doit cache stats|list|prune|push|verify``.
"""

from __future__ import annotations

from .artifact import (ZSTD_LEVEL, ZSTD_LEVEL_INCREMENTAL, annotate_artifact, pack_artifact, read_manifest,
                       verify_artifact)
from .restore import restore_artifact
from .cli import cache_cli
from .keys import canonical_json, check_key, checksum_key, compute_key, parse_size, uses_placeholder
from .local import Entry, LocalCache
from .oci import OciRemoteCache, parse_oci_url
from .remote import HttpStore, RemoteCache
from .store import (fetch_artifact, install_from_cache, locate_artifact, open_caches, open_remote,
                    publish)

__all__ = ["LocalCache", "RemoteCache", "HttpStore", "OciRemoteCache", "parse_oci_url", "open_remote", "Entry", "compute_key", "canonical_json", "check_key",
           "checksum_key", "parse_size", "uses_placeholder", "pack_artifact", "annotate_artifact",
           "ZSTD_LEVEL", "ZSTD_LEVEL_INCREMENTAL",
           "read_manifest", "verify_artifact", "restore_artifact", "open_caches", "fetch_artifact", "locate_artifact",
           "install_from_cache", "publish", "cache_cli"]
