"""Building one recipe: cache lookup, steps in containers with resume, install into the prefix.

Contract:
- :func:`build_recipe` ``(name, recipes, settings, *, push=True)``: the whole flow
  for one recipe whose dependencies are installed already (``doit build:<name>``
  depends on ``build:<dep>``; :func:`build_all` builds a closure in order):

  1. key = :func:`hermitbuild.cache.keys.recipe_key` (the tree identity from
     :func:`hermitbuild.plan.tree_id`, the image identity from
     :func:`hermitbuild.container.image_hash`);
  2. the install stamp ``<stamps>/install/<name>.json`` holds this key and its
     files are in the install root -> nothing to do;
  3. the local cache (then the remote) has the key -> verified restore into the
     install root (``settings.prefix``, or ``settings.tools`` for
     ``install_root: tools``), install stamp, done;
  4. otherwise: prepare the tree if needed (:func:`hermitbuild.plan.ensure_prepared`),
     then run the steps one by one, each in a fresh container
     (:func:`hermitbuild.container.run_in_container`), then pack
     ``<stage>/<install root>`` (:func:`hermitbuild.cache.pack_artifact`; an incremental
     rebuild's at ``cache.ZSTD_LEVEL_INCREMENTAL``), store it
     locally, push it when ``push`` and the remote is read-write, restore it into the
     install root and write the install stamp.
  5. after 3 or 4, paths the previous install stamp of this recipe listed and the new
     artifact does not (a file a newer version no longer installs) are removed from the
     install root, unless another recipe's install stamp lists them; directories only
     when empty.

- Directories, placeholders, containers, resume, a borrowed build directory
  (``build_from``) and ccache: :mod:`hermitbuild.steps`.
- Concurrency: one build of a recipe at a time (``flock`` on
  ``<stamps>/steps/<name>/.lock``); different recipes may build in parallel
  (``doit -n N``): they share nothing but the read-only prefix, the lock-protected
  cache and the final per-file atomic restore.
- :func:`is_installed` is cheap (file reads; no runtime, git or network call).
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import cache, doctor, plan, sbom
from .cache import keys
from .progress import record, step_line
from .errors import BuildError, ConfigError, HermitBuildError
from .recipe import Recipe, RecipeSet, expand
from .fsutil import ensure_writable_dir, file_lock, is_safe_relpath, read_json, write_json
from .settings import Settings
# the step machinery, re-exported: build.<name> is what the rest of the package and the tests use
from .layout import (DEFAULT_PATH, build_dir, container_labels, install_root, mounts_for,  # noqa: F401
                     placeholders, source_date_epoch, stage_dir, step_environment, step_log, work_dir)
from .layout import steps_dir as _steps_dir
from .steps import CONFIGURE_KINDS, ccache_summary, run_steps  # noqa: F401
from .steps import plan_steps as _plan_steps  # noqa: F401

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- keys

recipe_key = keys.recipe_key
definition_key = keys.definition_key


def _install_stamp(name: str, settings: Settings) -> Path:
    return settings.stamps_dir / "install" / f"{name}.json"


# --------------------------------------------------------------------------- installed?

def _stamp_current(name: str, key: str, settings: Settings, recipe: Recipe) -> bool:
    stamp = read_json(_install_stamp(name, settings))
    if not stamp or stamp.get("key") != key:
        return False
    root = install_root(recipe, settings)
    if stamp.get("root") != str(root):
        return False
    base = str(root)  # str joins: a no-op checks some 3,800 installed paths, twice
    return all(os.path.lexists(os.path.join(base, rel)) for rel in stamp.get("files", []))


def is_installed(name: str, recipes: RecipeSet, settings: Settings) -> bool:
    """Whether the install stamp holds the current key and its files are in the install root."""
    key, _ = recipe_key(name, recipes, settings)
    return _stamp_current(name, key, settings, recipes[name])


# --------------------------------------------------------------------------- the flow

def _write_install_stamp(recipe: Recipe, settings: Settings, key: str, files: Sequence[str],
                         how: str) -> None:
    write_json(_install_stamp(recipe.name, settings), {
        "key": key, "recipe": recipe.name, "version": recipe.version,
        "root": str(install_root(recipe, settings)), "files": sorted(files), "how": how,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _remove_stale(recipe: Recipe, recipes: RecipeSet, settings: Settings, new_files: Sequence[str],
                  previous: Mapping[str, Any] | None) -> list[str]:
    """Remove what the previous install of ``recipe`` put into its root and the new one does not.

    ``previous`` is the install stamp read before the new artifact was merged in.  Paths
    another recipe's install stamp lists (same root) are kept, and so are directories that
    are not empty.  Returns the removed relative paths."""
    root = install_root(recipe, settings)
    if not previous or previous.get("root") != str(root):
        return []
    old = previous.get("files")
    if not isinstance(old, list):
        return []
    keep = set(new_files)
    for other in recipes.order:
        if other == recipe.name:
            continue
        stamp = read_json(_install_stamp(other, settings))
        if stamp and stamp.get("root") == str(root) and isinstance(stamp.get("files"), list):
            keep.update(stamp["files"])
    removed: list[str] = []
    for rel in sorted((f for f in old if isinstance(f, str) and f not in keep), reverse=True):
        if not is_safe_relpath(rel):
            continue
        path = root / rel
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                path.rmdir()  # deepest first: its stale children are gone; fails if others remain
            else:
                continue
        except OSError:
            continue
        removed.append(rel)
    if removed:
        logger.info("%s: removed %d path(s) the previous install had and this one does not: %s",
                    recipe.name, len(removed), ", ".join(sorted(removed)[:10]))
    return removed


def _drop_files(recipe: Recipe, staged: Path, ctx: Mapping[str, str]) -> list[str]:
    """Remove the recipe's ``drop_files`` from its stage (they belong to another recipe)."""
    dropped: list[str] = []
    for raw in recipe.drop_files:
        pattern = expand(raw, ctx)
        matches = sorted(staged.glob(pattern))
        if not matches:
            logger.debug("%s: drop_files entry %r matches nothing in this install", recipe.name, pattern)
        for path in matches:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            dropped.append(str(path.relative_to(staged)))
    if dropped:
        logger.info("%s: left out of its artifact (drop_files): %s", recipe.name, ", ".join(dropped))
    return dropped


def _refuse_shared_files(recipe: Recipe, recipes: RecipeSet, settings: Settings, artifact: Path) -> None:
    """Refuse to install an artifact that has a file another installed recipe installed too
    (like dpkg's "trying to overwrite ..., which is also in package ..."): otherwise the
    prefix would depend on the order the recipes were (re)installed in."""
    try:
        entries = cache.read_manifest(artifact).get("files") or []
    except HermitBuildError:
        return  # a bad artifact is discarded by the restore; nothing to compare
    mine = {e["path"] for e in entries if isinstance(e, dict) and e.get("type") != "dir"}
    root = str(install_root(recipe, settings))
    for other in recipes.order:
        if other == recipe.name or other in recipe.replaces or recipe.name in recipes[other].replaces:
            continue  # a declared replacement: the replacing recipe is installed after the other
        stamp = read_json(_install_stamp(other, settings))
        if not stamp or stamp.get("root") != root or not isinstance(stamp.get("files"), list):
            continue
        shared = sorted(p for p in mine.intersection(stamp["files"])
                        if not (Path(root) / p).is_dir() or (Path(root) / p).is_symlink())
        if shared:
            listing = ", ".join(shared[:8]) + (f" and {len(shared) - 8} more" if len(shared) > 8 else "")
            raise HermitBuildError(
                f"cannot install '{recipe.name}': {len(shared)} file(s) in it are also installed by "
                f"'{other}'",
                f"both install {listing} into {root}; whichever installed last would win, so the prefix "
                "would depend on the order of (re)installs",
                f"decide which recipe owns them and add `drop_files: [{shared[0]}]` (patterns allowed) "
                f"to the other one's recipe file ({recipe.file} or {recipes[other].file}); or, when one "
                "is built after the other to install them again (a final build over a bootstrap one), "
                "declare `replaces: [<the earlier recipe>]` in the later one",
                recipe=recipe.name, other=other, shared=shared)


def _check_deps(recipe: Recipe, recipes: RecipeSet, settings: Settings) -> None:
    for dep in recipe.depends:
        if not is_installed(dep, recipes, settings):
            raise HermitBuildError(
                f"cannot build '{recipe.name}': its dependency '{dep}' is not installed (or is outdated)",
                f"{recipe.name} builds against {dep} installed in "
                f"{install_root(recipes[dep], settings)}",
                f"run `doit build:{recipe.name}` (doit builds the dependencies first) or "
                "`doit toolchain`")


def build_recipe(name: str, recipes: RecipeSet, settings: Settings, *, push: bool = True) -> None:
    """Build (or restore from the cache) and install one recipe; see the module docstring."""
    recipe = recipes[name]
    key, inputs = recipe_key(name, recipes, settings)
    if _stamp_current(name, key, settings, recipe):
        logger.info("%s: installed and up to date (key %s)", name, key[:12])
        return
    root = install_root(recipe, settings)
    ensure_writable_dir(settings.prefix, "prefix", ConfigError)
    ensure_writable_dir(root, "tools_prefix" if recipe.install_root == "tools" else "prefix", ConfigError)
    with file_lock(_steps_dir(name, settings) / ".lock"):
        if _stamp_current(name, key, settings, recipe):  # a concurrent run did it
            return
        _check_deps(recipe, recipes, settings)
        local, remote = cache.open_caches(settings)
        start = time.monotonic()
        previous = read_json(_install_stamp(name, settings))
        found = cache.locate_artifact(key, local, remote)
        if found is not None:
            _refuse_shared_files(recipe, recipes, settings, found[0])
        files = cache.install_from_cache(key, root, local, remote, found) if found is not None else None
        if files is not None:
            _write_install_stamp(recipe, settings, key, files, "cache")
            _remove_stale(recipe, recipes, settings, files, previous)
            seconds = time.monotonic() - start
            step_line(f"{name}: restored from the artifact cache ({key[:12]}) in {seconds:.1f}s")
            record(name, "restored", seconds, settings, f"key {key[:12]}")
            return
        # a build is needed: stop in seconds if this machine cannot run it (before any download)
        doctor.preflight(settings)
        src = plan.ensure_prepared(recipe, recipes, settings)
        defkey = definition_key(name, recipes, settings)
        sbom.import_in_background()  # the artifact's SBOM needs spdx-tools: imported while the steps run
        incremental = run_steps(recipe, recipes, settings, key=key, defkey=defkey, src=Path(src))
        compiled = ccache_summary(name, settings)
        if compiled:
            step_line(f"{name}: {compiled}")
        staged = stage_dir(name, settings) / str(root).lstrip("/")
        if not staged.is_dir():
            raise BuildError(name, recipe.steps[-1].name, recipe.steps[-1].argv(
                placeholders(recipe, settings, Path(src))),
                step_log(name, recipe.steps[-1].name, settings),
                f"nothing was installed under {staged}\n(install steps must install with "
                "DESTDIR={stage} into {install})", 0)
        _drop_files(recipe, staged, placeholders(recipe, settings, Path(src)))
        settings.build_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".artifact-{name}-", dir=settings.build_dir))
        try:
            created = datetime.datetime.fromtimestamp(source_date_epoch(recipe, recipes, settings),
                                                      datetime.timezone.utc)
            artifact = cache.pack_artifact(
                staged, key, inputs, tmp / f"{key}.tar.zst",
                level=cache.ZSTD_LEVEL_INCREMENTAL if incremental else cache.ZSTD_LEVEL,
                describe=sbom.describe_artifact(recipe, recipes, settings, key, str(inputs.get("tree", "")),
                                                created))
            _refuse_shared_files(recipe, recipes, settings, artifact)
            stored = cache.publish(key, artifact, local, remote, push=push)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        files = cache.restore_artifact(stored, root, key)
        _write_install_stamp(recipe, settings, key, files, "build")
        _remove_stale(recipe, recipes, settings, files, previous)
        step_line(f"{name}: installed into {root} ({len(files)} entries)")
        record(name, "built", time.monotonic() - start, settings,
               f"{len(files)} files" + (f", {compiled}" if compiled else ""))


def installed_key(name: str, settings: Settings) -> str | None:
    """The key of the artifact installed for ``name`` (its install stamp), or None."""
    stamp = read_json(_install_stamp(name, settings))
    key = stamp.get("key") if stamp else None
    return key if isinstance(key, str) else None


def build_all(names: Sequence[str], recipes: RecipeSet, settings: Settings, *,
              push: bool = True) -> None:
    """Build ``names`` and everything they depend on, in dependency order (sequentially)."""
    wanted: set[str] = set()
    for n in names:
        wanted.update(recipes.closure(n))
    for n in recipes.order:
        if n in wanted:
            build_recipe(n, recipes, settings, push=push)
