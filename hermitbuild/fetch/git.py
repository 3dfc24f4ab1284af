"""Git sources: one bare mirror per repository, pins, submodules, checkouts; git through the runner.

Contract: see :mod:`hermitbuild.fetch` (git sources).  Every git command runs through
:func:`hermitbuild.runner.run` (an argument list, logged, its output kept for errors);
:class:`GitFetcher` is this kind's :class:`~hermitbuild.fetch.common.SourceFetcher`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import runner
from ..errors import CommandError, FetchError, OfflineError
from ..fsutil import is_safe_relpath, write_atomic
from ..recipe import Source
from ..settings import Settings
from ..unpack import place_tree
from . import common
from .common import (COMMIT_RE, PINS_FILE, SCHEME_RE, git_mirror_path, is_local, local_path, locked,
                     mirror_dir_name, repo_name)

logger = logging.getLogger(__name__)


def _resolve_submodule_url(parent: str, url: str) -> str:
    """Resolve a relative submodule URL against the parent's URL, like git."""
    if not (url.startswith("./") or url.startswith("../")):
        return url
    base = parent.rstrip("/")
    rel = url
    while True:
        if rel.startswith("./"):
            rel = rel[2:]
        elif rel.startswith("../"):
            rel = rel[3:]
            cut = max(base.rfind("/"), base.rfind(":") if not SCHEME_RE.match(base) else -1)
            if SCHEME_RE.match(base) and cut < base.find("://") + 3:
                cut = -1
            if cut < 0:
                raise FetchError(f"cannot resolve submodule URL {url!r}",
                                 f"it climbs above the parent URL {parent!r}",
                                 "fix .gitmodules upstream or use a mirror", url=url)
            base = base[:cut]
        else:
            break
    return f"{base}/{rel}" if rel else base


class _GitFailed(Exception):
    """A git command failed; ``str()`` is its last meaningful output line."""


def _git(repo: Path | None, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``git [-C repo] args`` through the runner (logged like every command); its output.

    A non-zero exit raises _GitFailed with the last meaningful line; no git at all is a
    FetchError saying how to get it."""
    argv = ["git", *(["-C", str(repo)] if repo is not None else []), *args]
    try:
        done = runner.run(argv, capture=True, check=False, env=env)
    except CommandError as exc:  # git is not installed or cannot start
        raise FetchError("cannot run git", exc.why, "install git (`sudo apt-get install git`)") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.output.splitlines() if ln.strip()]
        raise _GitFailed(lines[-1] if lines else f"exit status {done.returncode}")
    return done.output


def _read_pins(mirror: Path) -> dict[str, dict]:
    try:
        text = (mirror / PINS_FILE).read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, dict] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            out[str(entry["commit"])] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _record_pin(mirror: Path, commit: str, date: int, subs: list[list[str]] | None) -> None:
    pins = _read_pins(mirror)
    old = pins.get(commit) or {}
    pins[commit] = {"commit": commit, "date": date,
                    "submodules": subs if subs is not None else old.get("submodules")}
    write_atomic(mirror / PINS_FILE,
                 "".join(json.dumps(e, sort_keys=True) + "\n" for e in pins.values()))


def _git_pin_known(url: str, commit: str, submodules: bool, settings: Settings,
                   seen: frozenset = frozenset()) -> bool:
    mirror = git_mirror_path(url, settings)
    if not (mirror / "objects").is_dir():
        return False
    entry = _read_pins(mirror).get(commit)
    if entry is None:
        return False
    if not submodules:
        return True
    subs = entry.get("submodules")
    if subs is None:
        return False
    seen = seen | {(url, commit)}
    return all(_git_pin_known(u, c, True, settings, seen) for _p, u, c in subs if (u, c) not in seen)


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
        return True
    except _GitFailed:
        return False


def _init_mirror(mirror: Path, url: str) -> None:
    """Make ``mirror`` a bare repository (unless it is one) that remembers its URL."""
    if (mirror / "objects").is_dir() and (mirror / "HEAD").is_file():
        return
    logger.info("creating bare mirror %s for %s", mirror, url)
    try:
        mirror.mkdir(parents=True, exist_ok=True)
        _git(None, "init", "--quiet", "--bare", str(mirror))
        _git(mirror, "config", "hermitbuild.url", url)
    except (_GitFailed, OSError) as exc:
        raise FetchError(f"the git mirror {mirror} is unusable", str(exc),
                         f"delete {mirror} and fetch again", url=url, mirror=str(mirror)) from None


def _git_candidates(url: str, settings: Settings) -> list[str]:
    name = repo_name(url)
    out: list[str] = []
    for mirror in settings.mirrors:
        if is_local(mirror):
            base = local_path(mirror, settings.root)
            out += [str(base / f"{name}.git"), str(base / name),
                    str(base / "git" / mirror_dir_name(url, settings.root))]
        else:
            base_url = mirror.rstrip("/")
            out += [f"{base_url}/{name}.git", f"{base_url}/{name}"]
    out.append(url)
    return out


_PERMANENT_GIT_ERRORS = ("not found", "does not appear to be a git repository", "404",
                        "not our ref", "couldn't find remote ref", "authentication failed",
                        "could not read username", "no such", "upload-pack: not our ref",
                        "unadvertised object", "could not resolve host")


def _git_fetch(repo: Path, url: str, refspecs: list[str], local: bool) -> None:
    """``git fetch`` with no prompts, a stall limit, and retries with backoff on network trouble."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
           "GIT_HTTP_LOW_SPEED_TIME": str(int(common.READ_TIMEOUT))}
    attempt = 0
    while True:
        try:
            _git(repo, "fetch", "--quiet", url, *refspecs, env=env)
            return
        except _GitFailed as exc:
            text = str(exc).lower()
            attempt += 1
            if local or attempt > 2 or any(p in text for p in _PERMANENT_GIT_ERRORS):
                raise
            delay = common.BACKOFF_SECONDS * 2 ** (attempt - 1)
            logger.warning("git fetch %s failed (%s); retrying in %.1fs", url, exc, delay)
            time.sleep(delay)


def _update_mirror(repo: Path, mirror: Path, url: str, commit: str, settings: Settings) -> None:
    """Fetch into the mirror from mirrors then upstream until ``commit`` is there."""
    tries: list[str] = []
    for cand in _git_candidates(url, settings):
        local = is_local(cand)
        if settings.offline and not local:
            tries.append(f"{cand}: skipped (offline mode)")
            continue
        arg = cand
        if local:
            path = local_path(cand, settings.root)
            if not path.exists():
                tries.append(f"{path}: not present")
                continue
            if path.resolve() == mirror.resolve():
                continue
            arg = str(path)
        logger.info("git fetch %s -> %s (commit %s is missing)", cand, mirror, commit[:12])
        first_error = ""
        try:
            _git_fetch(repo, arg, ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], local)
        except _GitFailed as exc:
            first_error = str(exc)
            if not local:  # a network failure would only repeat itself
                tries.append(f"{cand}: git fetch failed: {first_error}")
                continue
            # a local copy may be incomplete (missing objects) yet still hold the pinned commit
            logger.warning("git fetch %s failed (%s); asking for commit %s alone", cand, first_error,
                           commit[:12])
        else:
            if _has_commit(repo, commit):
                return
            logger.info("git fetch %s %s (not on a branch or tag; asking for it by id)", cand,
                        commit[:12])
        try:
            _git_fetch(repo, arg, [commit], local)
        except _GitFailed as exc:
            if first_error:
                tries.append(f"{cand}: git fetch failed: {first_error}; fetching the commit alone "
                             f"failed too: {exc}")
            else:
                tries.append(f"{cand}: commit {commit} is on no branch or tag there, and fetching it "
                             f"by id failed: {exc}")
            continue
        if _has_commit(repo, commit):
            return
        tries.append(f"{cand}: commit {commit} not found")
    if settings.offline:
        looked = [t for t in tries if not t.endswith("(offline mode)")]
        raise OfflineError(f"commit {commit} of git repository {url}", mirror,
                           url + ("; also tried:\n    " + "\n    ".join(looked) if looked else ""))
    raise FetchError(f"could not fetch commit {commit} of {url}",
                     "tried:\n    " + "\n    ".join(tries),
                     f"check the URL, the commit and the network (or settings.mirrors); a bare clone "
                     f"holding the commit can also be put at {mirror}", url=url, commit=commit,
                     tried=tries)


def _submodules_at(repo: Path, parent_url: str, commit: str) -> list[list[str]]:
    """[[path, absolute url, pinned commit], ...] from .gitmodules and the gitlinks at ``commit``."""
    try:
        if not _git(repo, "ls-tree", commit, "--", ".gitmodules").strip():
            return []
        listing = _git(repo, "config", "--blob", f"{commit}:.gitmodules", "--list")
    except _GitFailed as exc:
        raise FetchError(f"cannot read .gitmodules of {parent_url} at {commit}", str(exc),
                         "fix .gitmodules upstream or set `submodules: false`", url=parent_url) from None
    modules: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("submodule."):
            continue
        name, _, field = key[len("submodule."):].rpartition(".")
        modules.setdefault(name, {})[field] = value
    out: list[list[str]] = []
    for name, fields in modules.items():
        path, url = fields.get("path"), fields.get("url")
        if not path or not url:
            logger.warning("%s@%s: submodule %r lacks path or url in .gitmodules; skipped",
                           parent_url, commit[:12], name)
            continue
        if not is_safe_relpath(path):
            raise FetchError(f"unsafe submodule path {path!r} in {parent_url} at {commit}",
                             "it points outside the tree", "fix .gitmodules upstream", url=parent_url)
        try:
            entry = _git(repo, "ls-tree", commit, "--", path).strip()
        except _GitFailed as exc:
            raise FetchError(f"cannot read the gitlink of submodule {path!r} of {parent_url} at {commit}",
                             str(exc), "fix the parent repository", url=parent_url) from None
        fields_ = entry.split(None, 3)
        if len(fields_) < 3 or fields_[0] != "160000":
            logger.warning("%s@%s: submodule %r has no gitlink at %s; skipped", parent_url, commit[:12],
                           name, path)
            continue
        out.append([path, _resolve_submodule_url(parent_url, url), fields_[2]])
    return out


def _ensure_git(url: str, commit: str, submodules: bool, settings: Settings,
                visiting: set[tuple[str, str]]) -> Path:
    if not COMMIT_RE.match(commit or ""):
        raise FetchError(f"git source {url} has no valid commit pin", f"commit is {commit!r}",
                         "pin `commit:` to a full 40-hex-digit commit id", url=url)
    mirror = git_mirror_path(url, settings)
    visiting.add((url, commit))
    if _git_pin_known(url, commit, submodules, settings):
        return mirror
    with locked(mirror):
        fresh = not (mirror / "objects").is_dir()
        if fresh and mirror.exists() and (not mirror.is_dir() or any(mirror.iterdir())):
            raise FetchError(f"the git mirror {mirror} is unusable",
                             "it exists but is not a bare git repository",
                             f"delete {mirror} (or put a bare clone of {url} there) and fetch again",
                             url=url, mirror=str(mirror))
        mirror.parent.mkdir(parents=True, exist_ok=True)
        # a new mirror is made beside its final place and renamed when complete, so a failed
        # first fetch leaves nothing behind (and OfflineError's "put it at" path stays free)
        repo_dir = Path(tempfile.mkdtemp(prefix=mirror.name + ".new-", dir=mirror.parent)) \
            if fresh else mirror
        try:
            _init_mirror(repo_dir, url)
            if not _has_commit(repo_dir, commit):
                _update_mirror(repo_dir, mirror, url, commit, settings)
            else:
                logger.info("%s: commit %s already in %s", url, commit[:12], mirror)
            try:
                _git(repo_dir, "update-ref", f"refs/hermitbuild/pins/{commit}", commit)
                date = int(_git(repo_dir, "show", "-s", "--format=%ct", commit).split()[-1])
            except (_GitFailed, ValueError, IndexError) as exc:
                raise FetchError(f"cannot read commit {commit} in {mirror}", str(exc),
                                 f"delete {mirror} and fetch again", url=url) from None
            subs = _submodules_at(repo_dir, url, commit) if submodules else None
            if fresh:
                os.rename(repo_dir, mirror)
        finally:
            if fresh and repo_dir.exists():
                shutil.rmtree(repo_dir, ignore_errors=True)
    for _path, sub_url, sub_commit in subs or []:
        if (sub_url, sub_commit) in visiting:
            continue
        logger.info("%s: submodule %s -> %s at %s", url, _path, sub_url, sub_commit[:12])
        _ensure_git(sub_url, sub_commit, True, settings, visiting)
    with locked(mirror):
        _record_pin(mirror, commit, date, subs)
    return mirror


def _checkout_git(url: str, commit: str, submodules: bool, settings: Settings, work: Path,
                  keep_git: bool) -> None:
    """Clone the mirror of ``url`` into the new directory ``work`` at ``commit`` (+ submodules)."""
    mirror = git_mirror_path(url, settings)
    logger.info("checking out %s at %s into %s", url, commit, work)
    try:
        _git(None, "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(work))
        # the tree must not depend on the user's git configuration
        _git(work, "config", "core.autocrlf", "false")
        _git(work, "config", "core.eol", "lf")
        _git(work, "checkout", "--quiet", "--detach", commit)
        head = _git(work, "rev-parse", "HEAD").split()[-1]
        if head != commit:
            raise FetchError(f"checkout of {url} is at {head}, not the pinned {commit}",
                             "git checked out something else than asked",
                             f"delete {mirror} and fetch again", url=url, commit=commit, head=head)
        subs = _submodules_at(work, url, commit) if submodules else []
        for path, sub_url, sub_commit in subs:
            sub_dir = work / path
            if sub_dir.is_dir() and not any(sub_dir.iterdir()):
                sub_dir.rmdir()
            if sub_dir.exists():
                raise FetchError(f"cannot check out submodule {path} of {url}",
                                 f"{sub_dir} is not an empty directory in the parent's tree",
                                 "fix the parent repository", url=url)
            _checkout_git(sub_url, sub_commit, True, settings, sub_dir, keep_git)
        if keep_git:
            _git(work, "remote", "set-url", "origin", url)
    except _GitFailed as exc:
        raise FetchError(f"checkout of {url} at {commit} failed", str(exc),
                         f"if the mirror is damaged, delete {mirror} and fetch again",
                         url=url, commit=commit) from None
    if not keep_git:
        shutil.rmtree(work / ".git")


class GitFetcher:
    """Git: a bare mirror per repository (submodules each their own), pins recorded beside it."""

    def is_fetched(self, source: Source, settings: Settings) -> bool:
        return _git_pin_known(source.url, source.commit, source.submodules, settings)

    def fetch(self, source: Source, settings: Settings) -> Path:
        return _ensure_git(source.url, source.commit, source.submodules, settings, set())

    def checkout(self, source: Source, settings: Settings, target: Path, keep_git: bool) -> None:
        self.fetch(source, settings)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.checkout-", dir=target.parent))
        try:
            _checkout_git(source.url, source.commit, source.submodules, settings, tmp / "tree", keep_git)
            place_tree(tmp / "tree", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit_date(self, source: Source, settings: Settings, *, fetch: bool) -> int | None:
        """The pin's committer date as recorded when it was fetched; with ``fetch``, fetched first
        when not recorded yet."""
        entry = _read_pins(git_mirror_path(source.url, settings)).get(source.commit) or {}
        if "date" not in entry and fetch:
            self.fetch(source, settings)
            entry = _read_pins(git_mirror_path(source.url, settings)).get(source.commit) or {}
        return int(entry["date"]) if isinstance(entry.get("date"), int) else None
