"""The glue the build uses: open the caches, look a key up (local, then remote), restore, publish.

Contract: see :mod:`hermitbuild.cache` (the last paragraph).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import ArtifactError, CacheError, HermitBuildError
from ..settings import Settings
from .restore import restore_artifact
from .keys import parse_size
from .local import LocalCache
from .oci import OciRemoteCache
from .remote import HttpStore, RemoteCache

logger = logging.getLogger(__name__)


def open_remote(url: str, mode: str, token: str = "", auth_files: Sequence[Path] = ()) -> HttpStore:
    """The remote store for ``url``: an OCI registry (``oci://``, ``oci+http://``) or plain HTTP(S)."""
    if url.startswith(("oci://", "oci+http://")):
        return OciRemoteCache(url, mode, token, auth_files=auth_files)
    return RemoteCache(url, mode, token)


def open_caches(settings: Settings) -> tuple[LocalCache, HttpStore | None]:
    """The local cache and (when the mode is not off) the remote cache of these settings."""
    cache_dir = settings.cache_dir or (settings.build_dir / "cache")
    local = LocalCache(cache_dir, parse_size(settings.cache_max_size))
    remote = None
    if settings.remote_cache_mode != "off":
        remote = open_remote(settings.remote_cache, settings.remote_cache_mode,
                             settings.remote_cache_token, settings.registry_auth_files)
    return local, remote


def locate_artifact(key: str, local: LocalCache,
                    remote: HttpStore | None) -> tuple[Path, str] | None:
    """The artifact of ``key`` and its recorded sha256: from the local cache, or downloaded
    from the remote into it (verified there) on a local miss.  The local file is not hashed
    here; whoever reads it checks the digest in the same pass (:func:`install_from_cache`)."""
    found = local.lookup(key)
    if found is not None or remote is None:
        return found
    incoming = local.root / ".incoming"
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", dir=incoming))
    except OSError as exc:
        logger.warning("cannot use the local cache %s (%s); skipping the remote", local.root, exc)
        return None
    try:
        got = remote.download(key, tmp / key)
        if got is None:
            return None
        try:
            local.put(key, got[0], move=True, digest=got[1])
        except HermitBuildError as exc:
            logger.warning("could not store the downloaded artifact %s: %s", key[:12], exc)
            return None
        return local.lookup(key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_artifact(key: str, local: LocalCache, remote: HttpStore | None) -> Path | None:
    """The verified artifact of ``key`` (local, else downloaded from the remote), or None."""
    path = local.get(key)
    if path is not None or remote is None:
        return path
    found = locate_artifact(key, local, remote)
    return None if found is None else found[0]


def install_from_cache(key: str, dest_root: Path, local: LocalCache, remote: HttpStore | None,
                       found: tuple[Path, str] | None = None) -> list[str] | None:
    """Restore ``key`` into ``dest_root`` from the caches; None means "not cached, build it".

    ``found``: what :func:`locate_artifact` returned, when the caller looked already.  The
    artifact is read once: its sha256 against the recorded one, every member against the
    manifest, while unpacking.  A corrupt or mismatching artifact is logged, discarded from
    the local cache and reported as None.  Conflicts in ``dest_root`` (CacheError that is not
    ArtifactError) propagate.
    """
    if found is None:
        found = locate_artifact(key, local, remote)
    if found is None:
        return None
    path, digest = found
    try:
        return restore_artifact(path, dest_root, key, raw_sha256=digest)
    except ArtifactError as exc:
        logger.warning("%s\n  discarding it; the recipe will be built", exc)
        try:
            local.remove(key)
        except (CacheError, OSError) as err:
            logger.warning("could not delete the bad artifact %s: %s", path, err)
        return None


def publish(key: str, artifact: Path, local: LocalCache, remote: HttpStore | None,
            push: bool = True) -> Path:
    """Store ``artifact`` locally and (when ``push`` and the remote is read-write) push it."""
    stored = local.put(key, artifact)
    if push and remote is not None and remote.mode == "readwrite":
        remote.put(key, stored)
    return stored
