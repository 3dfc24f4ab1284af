"""Fetching sources: one interface, one class per source kind (git, tarball).

Contract:

- :func:`fetcher` gives the :class:`~hermitbuild.fetch.common.SourceFetcher` of a
  source's kind (:class:`~hermitbuild.fetch.git.GitFetcher`,
  :class:`~hermitbuild.fetch.tarball.TarballFetcher`); the functions below are the
  public API and only dispatch.  A local source override is no source kind: it is a
  directory the prepare stage copies (:mod:`hermitbuild.prepare`).

Git sources (:mod:`.git`; every git command through the runner, logged like any other):

- One shared bare mirror per repository at :func:`git_mirror_path`
  (``<downloads>/git/<host+path>.git``).  It is fetched (branches and tags, then
  the pinned commit by id if it is on neither) only when the pinned commit is
  missing, so a present pin never touches the network.  Each pin gets a ref
  ``refs/hermitbuild/pins/<commit>`` so it survives upstream force-pushes and gc.
- Submodules are read from ``.gitmodules`` *at the pinned commit*, each pinned at
  the commit the parent's tree records (gitlink); relative URLs (``../lwip.git``)
  resolve against the parent's upstream URL like git does.  Every submodule gets
  its own bare mirror, recursively.
- After a successful fetch the mirror's ``hermitbuild-pins`` file (JSON lines:
  commit, committer date, submodule pins) records the pin, which is what the
  cheap :func:`is_fetched` and :func:`commit_date` read.
- :func:`checkout` clones the mirror (``--shared --no-checkout``), checks out
  exactly the pin (detached), the submodules at the parent's pins, verifies
  ``HEAD == pin`` everywhere (else :class:`~hermitbuild.errors.FetchError`),
  then drops ``.git`` (unless ``keep_git=True``; a kept ``.git`` borrows objects
  from the mirror through ``objects/info/alternates``) and moves the tree into
  ``dest/source.dest``.  Source URLs may be ``file://`` URLs or local paths.

Tarball sources (:mod:`.tarball`; requests):

- Stored at :func:`tarball_path` (``<downloads>/<basename>``).  Streamed to
  ``<file>.part``; a dropped connection is resumed with an HTTP ``Range`` request
  (a ``206`` appends, a ``200`` starts over); transient errors (connection
  errors, timeouts, HTTP 5xx/408/429) are retried with exponential backoff
  (a host name that does not resolve only once: that is rarely transient)
  (:data:`common.RETRIES`, :data:`common.BACKOFF_SECONDS`); other HTTP errors such as 404 move
  on to the next URL.  The sha256 is verified before the rename; a mismatch
  deletes the file and, if no other URL serves the right file,
  raises :class:`~hermitbuild.errors.ChecksumError` with both digests.  When every
  URL fails, :class:`~hermitbuild.errors.FetchError` lists each URL with its
  status.  A verified file gets a ``<file>.verified`` note (sha256, size, mtime)
  so :func:`is_fetched` need not re-hash.
- Slow servers: every receive is written at once (a drop keeps what arrived); a transfer
  that moves less than ``download_min_rate`` bytes/s over a ``download_stall`` window (or
  is silent that long) is cut and retried as a failure (a trickle is not progress); a
  file not done within ``download_deadline`` stops with a FetchError naming the setting.
  A redirect loop is not retried.
- A progress bar is drawn on stderr when it is a terminal; otherwise plain log
  lines.

Mirrors and offline mode (``settings.mirrors``, ``settings.offline``):

- Mirrors are tried in order *before* upstream.  Tarballs: ``<mirror>/<basename>``.
  Git: ``<mirror>/<name>.git``, then ``<mirror>/<name>`` (``name`` = the last URL
  path component without ``.git``), and for local directories also
  ``<mirror>/git/<mirror dir name>`` (a copied ``build/downloads``).  A mirror is
  a base URL (http, https, file://) or a local directory (relative paths are
  relative to ``settings.root``).
- Offline mode never touches the network; local directories and ``file://`` are
  still used.  Anything missing raises :class:`~hermitbuild.errors.OfflineError`
  naming the file or mirror path needed and where to put it.

Cheap functions (:func:`is_fetched`, :func:`tarball_path`, :func:`git_mirror_path`,
:func:`recorded_commit_date`) only read small files: no network, no subprocess.
Nothing runs at import time (requests is imported when a download starts).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FetchError
from ..fsutil import is_safe_relpath
from ..recipe import Recipe, Source
from ..settings import Settings
from . import common, git, tarball
from .common import SourceFetcher, git_mirror_path, tarball_path
from .git import GitFetcher
from .tarball import TarballFetcher

__all__ = ["fetcher", "fetch_source", "fetch_recipe", "is_fetched", "tarball_path", "git_mirror_path",
           "checkout", "commit_date", "recorded_commit_date", "common", "git", "tarball"]

_FETCHERS: dict[str, SourceFetcher] = {"git": GitFetcher(), "tarball": TarballFetcher()}


def fetcher(source: Source) -> SourceFetcher:
    """The fetcher of ``source``'s kind."""
    try:
        return _FETCHERS[source.kind]
    except KeyError:
        raise FetchError(f"unknown source kind {source.kind!r} for {source.url}",
                         "only git and tarball sources exist", "fix the recipe", url=source.url) from None


def is_fetched(source: Source, settings: Settings) -> bool:
    """True if the pinned source is in the downloads dir (cheap: reads small files only)."""
    return source.kind in _FETCHERS and fetcher(source).is_fetched(source, settings)


def fetch_source(source: Source, settings: Settings) -> Path:
    """Make the pinned source present; returns the tarball file or the bare mirror dir."""
    return fetcher(source).fetch(source, settings)


def fetch_recipe(recipe: Recipe, settings: Settings) -> list[Path]:
    """Fetch every source of ``recipe`` (overrides are not considered here)."""
    return [fetch_source(s, settings) for s in recipe.sources]


def _dest_of(source: Source, dest: Path) -> Path:
    sub = source.dest or "."
    if sub != "." and not is_safe_relpath(sub):
        raise FetchError(f"source {source.url} has an unsafe dest {source.dest!r}",
                         "dest must be a relative path inside the tree", "fix `dest:` in the recipe",
                         url=source.url)
    return Path(os.path.normpath(dest / sub))


def checkout(source: Source, settings: Settings, dest: Path, *, keep_git: bool = False) -> None:
    """Put the pinned source into ``dest / source.dest`` (fetching it first if needed)."""
    fetcher(source).checkout(source, settings, _dest_of(source, Path(dest)), keep_git)


def recorded_commit_date(source: Source, settings: Settings) -> int | None:
    """The committer date of a git source's pin as recorded when it was fetched; None for
    tarballs or when not fetched yet.  Pure file reads (the build stage uses it)."""
    return fetcher(source).commit_date(source, settings, fetch=False)


def commit_date(source: Source, settings: Settings) -> int | None:
    """Committer date (Unix time) of a git source's pin; None for tarballs.  Cheap once
    fetched (read from the mirror's pins file); fetches first otherwise."""
    return fetcher(source).commit_date(source, settings, fetch=True)
