"""How the stages meet for one recipe: syscall table -> prepared tree identity and generator.

Contract: the only place that decides which syscall table entries reach which
tree (a recipe with ``syscalls: kernel`` gets the kernel side, ``newlib`` the
newlib side, ``none`` nothing), and so the only place that builds the
``generate`` hook and the syscall digest handed to :mod:`hermitbuild.prepare`.
Both the ``prepare:*`` tasks and :mod:`hermitbuild.build` call
:func:`tree_id` / :func:`ensure_prepared`, so the tree identity (and with it
the cache key) is computed in one way only.  Cheap: reads files, runs nothing
(``generate`` runs automake in the build container when called).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable, Sequence

from . import container, prepare, syscalls, treedigest
from .errors import HermitBuildError
from .recipe import Recipe, RecipeSet
from .settings import Settings

logger = logging.getLogger(__name__)

TABLE_FILE = "table.yaml"


def table_path(settings: Settings) -> Path:
    return settings.syscalls_dir / TABLE_FILE


def _table(settings: Settings):
    path = table_path(settings)
    if not path.exists():
        return None
    return syscalls.load_table(path)


def syscall_digest(recipe: Recipe, settings: Settings, *, empty_table: bool = False) -> str:
    """Digest of the syscall table entries that reach ``recipe``'s tree ("" when none do).

    ``empty_table``: the digest as if the table had no entries (what the pristine
    tree has), for the keys of recipes with ``ignores_syscalls``."""
    if recipe.syscalls == "none" or not table_path(settings).exists():
        return ""
    if empty_table:
        return syscalls.EMPTY_DIGEST
    table = _table(settings)
    if table is None:
        return ""
    return syscalls.digest(table, recipe.syscalls)


def automake_in_container(settings: Settings) -> Callable[[Path], None]:
    """An ``automake(dir)`` callable running the build image's automake-1.11 on ``dir``."""

    def automake(directory: Path) -> None:

        cache = Path(directory) / "autom4te.cache"
        had_cache = cache.exists()
        # the whole prepared-tree area is mounted (the tree is still in its temp dir)
        run_root = settings.src_dir
        # autoconf 2.64 for automake's traces, as newlib's files were made with: the image's
        # default autoconf (2.71) would add a `runstatedir = @runstatedir@` line to Makefile.in
        container.run_in_container(
            "toolchain", ["automake-1.11"], settings, cwd=directory, mounts=[(run_root, True)],
            env={"AUTOCONF": "autoconf2.64", "AUTOM4TE": "autom4te2.64"},
            log_path=settings.logs_dir / "syscalls" / "automake.log")
        if not had_cache:  # leave the tree as clean as we found it (like the host variant)
            shutil.rmtree(cache, ignore_errors=True)

    return automake


def generator(recipe: Recipe, settings: Settings,
              automake: Callable[[Path], None] | None = None) -> Callable[[Path], None] | None:
    """The hook that writes generated syscall code into a freshly prepared tree, or None."""
    if recipe.syscalls == "none":
        return None
    table = _table(settings)
    if table is None:
        return None
    if recipe.syscalls == "kernel":
        def generate_kernel(tree: Path) -> None:
            syscalls.generate_kernel(tree, table)

        return generate_kernel
    runner_fn = automake or automake_in_container(settings)

    def generate_newlib(tree: Path) -> None:
        syscalls.generate_newlib(tree, table, runner_fn)

    return generate_newlib


def owner(recipe: Recipe, recipes: RecipeSet) -> Recipe:
    return recipes[recipe.tree_owner]


def tree_id(recipe: Recipe, recipes: RecipeSet, settings: Settings, *, empty_table: bool = False) -> str:
    """Identity of the prepared tree ``recipe`` builds from (owner's pins, patches, syscalls;
    ``empty_table``: as if the syscall table had no entries)."""
    own = owner(recipe, recipes)
    return prepare.tree_identity(own, settings, syscall_digest(own, settings, empty_table=empty_table))


def is_prepared(recipe: Recipe, recipes: RecipeSet, settings: Settings) -> bool:
    own = owner(recipe, recipes)
    return prepare.is_prepared(own, settings, syscall_digest(own, settings))


def ensure_prepared(recipe: Recipe, recipes: RecipeSet, settings: Settings,
                    automake: Callable[[Path], None] | None = None) -> Path:
    """Prepare the tree ``recipe`` builds from unless it is already up to date; return its path."""
    own = owner(recipe, recipes)
    if prepare.is_prepared(own, settings, syscall_digest(own, settings)):
        return prepare.tree_path(own, settings)
    return prepare.prepare_tree(own, settings, generator(own, settings, automake),
                                syscall_digest=syscall_digest(own, settings))


def _generating_owners(recipes: RecipeSet) -> dict[str, Recipe]:
    """The tree owner generated into per side ("kernel", "newlib"), first in build order."""
    found: dict[str, Recipe] = {}
    for name in recipes.order:
        rec = recipes[name]
        if rec.syscalls != "none" and not rec.tree_from:
            found.setdefault(rec.syscalls, rec)
    return found


def run_syscall_command(argv: Sequence[str], recipes: RecipeSet, settings: Settings,
                        automake: Callable[[Path], None] | None = None) -> int:
    """``doit syscall ARGS`` on the prepared trees of the recipes that generate code, keeping
    them prepared: a tree that was up to date before a successful edit is stamped with its new
    identity (:func:`hermitbuild.prepare.restamp_edited`) when it is in line with the table
    afterwards (``syscalls.drift`` finds nothing), so `doit toolchain` rebuilds from it at once
    instead of preparing it again; after a failed or partial edit the stamps are as before, or
    gone (then the next build prepares afresh)."""
    owners = _generating_owners(recipes)
    # only these trees' identities are needed: list only their source overrides (not GCC's)
    treedigest.list_together(settings.overrides[key] for key in
                             (rec.override_name(settings.overrides) for rec in owners.values()) if key)
    trees = {side: prepare.tree_path(rec, settings) for side, rec in owners.items()}
    kernel = trees.get("kernel") if trees.get("kernel", Path("/nonexistent")).is_dir() else None
    newlib = trees.get("newlib") if trees.get("newlib", Path("/nonexistent")).is_dir() else None
    taken: dict[str, bytes] = {}
    for side, rec in owners.items():
        if prepare.is_prepared(rec, settings, syscall_digest(rec, settings)):
            data = prepare.take_stamp(rec, settings)
            if data is not None:
                taken[side] = data
    status = 1
    try:
        status = syscalls.cli_main(list(argv), settings, trees=lambda: (kernel, newlib),
                                   automake=automake or automake_in_container(settings))
    finally:
        table = None
        if status == 0 and taken:
            try:
                table = _table(settings)
            except HermitBuildError:
                table = None
        for side, data in taken.items():
            rec = owners[side]
            in_line = table is not None and not syscalls.drift(
                kernel if side == "kernel" else None, newlib if side == "newlib" else None, table)
            if in_line:
                prepare.restamp_edited(rec, settings, data, syscall_digest(rec, settings))
            elif status != 0 or table is None:
                prepare.put_back_stamp(rec, settings, data)  # the transaction left the tree as it was
            else:
                logger.info("%s: the tree differs from the table (not applied); it is prepared "
                            "again by the next build", rec.name)
    return status
