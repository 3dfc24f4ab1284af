"""Where a recipe's build lives and what its steps see: directories, placeholders, environment, mounts.

Contract:
- One recipe's directories: ``<work>/<name>/{build,stage}`` (:func:`work_dir`, :func:`build_dir`,
  :func:`stage_dir`), step stamps ``<stamps>/steps/<name>/`` (:func:`steps_dir`), step logs
  ``<logs>/<name>/<step>.log`` (:func:`step_log`); files install under :func:`install_root` (the
  prefix, or the tools prefix for ``install_root: tools``).
- :func:`placeholders` are the values of a recipe's ``{...}`` placeholders for a build from a
  given tree (in a given build directory: a borrowed one, ``build_from``);
  :func:`step_environment` is a step's environment (PATH with the prefix, SOURCE_DATE_EPOCH from
  :func:`source_date_epoch`, the recipe's and the step's variables, ccache's when it is on);
  :func:`mounts_for` the container mounts (the tree read-only, the work directory read-write, the
  prefix read-only, ccache's directory); :func:`container_labels` the labels of its containers.
- Nothing here runs a command or writes a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from . import fetch
from .fsutil import is_inside
from .recipe import Recipe, RecipeSet, Step
from .settings import Settings

DEFAULT_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CCACHE_PATH = "/usr/lib/ccache"


def install_root(recipe: Recipe, settings: Settings) -> Path:
    """Where a recipe's files are installed: the prefix or the tools prefix."""
    return settings.tools if recipe.install_root == "tools" else settings.prefix


def work_dir(name: str, settings: Settings) -> Path:
    return settings.work_dir / name


def build_dir(name: str, settings: Settings) -> Path:
    return work_dir(name, settings) / "build"


def stage_dir(name: str, settings: Settings) -> Path:
    return work_dir(name, settings) / "stage"


def step_log(name: str, step: str, settings: Settings) -> Path:
    """``<logs>/<recipe>/<step>.log``."""
    return settings.logs_dir / name / f"{step}.log"


def steps_dir(name: str, settings: Settings) -> Path:
    return settings.stamps_dir / "steps" / name



def source_date_epoch(recipe: Recipe, recipes: RecipeSet, settings: Settings) -> int:
    """Commit date of the tree's first git source, else the recipe's source_date_epoch, else 0."""
    owner = recipes[recipe.tree_owner]
    for src in owner.sources:
        if src.kind == "git" and owner.name not in settings.overrides:
            date = fetch.recorded_commit_date(src, settings)  # recorded by the fetch; no network here
            if date is not None:
                return int(date)
            break
    for rec in (recipe, owner):
        if rec.source_date_epoch is not None:
            return rec.source_date_epoch
    return 0


def placeholders(recipe: Recipe, settings: Settings, src: Path, build: Path | None = None) -> dict[str, str]:
    """The values of the recipe placeholders for a build of ``recipe`` from tree ``src``
    (in ``build``, default its own build directory)."""
    build = build or build_dir(recipe.name, settings)
    return {
        "prefix": str(settings.prefix),
        "tools": str(settings.tools),
        "install": str(install_root(recipe, settings)),
        "target": settings.target,
        "src": str(build if recipe.build_in_source else src),
        "build": str(build),
        "stage": str(stage_dir(recipe.name, settings)),
        "jobs": str(settings.parallel_jobs),
        "name": recipe.name,
        "version": recipe.version,
        "hermit_languages": ";".join(settings.hermit_languages),
    }


def step_environment(recipe: Recipe, step: Step, settings: Settings, ctx: Mapping[str, str],
                     epoch: int, compiler_id: str = "") -> dict[str, str]:
    env = {"PATH": f"{settings.prefix}/bin:{settings.tools}/bin:{DEFAULT_PATH}",
           "SOURCE_DATE_EPOCH": str(epoch)}
    env.update(recipe.environment(ctx))
    env.update(step.environment(ctx))
    if settings.ccache:
        env["PATH"] = f"{CCACHE_PATH}:{env['PATH']}"
        env.update({"CCACHE_DIR": str(settings.ccache_root), "CCACHE_BASEDIR": str(settings.build_dir),
                    "CCACHE_NOHASHDIR": "1", "STAGE_CC_WRAPPER": "ccache",
                    "CCACHE_STATSLOG": str(work_dir(recipe.name, settings) / "ccache-stats.log")})
        if compiler_id:
            env["CCACHE_COMPILERCHECK"] = f"string:{compiler_id}"
    return env


def mounts_for(recipe: Recipe, settings: Settings, src: Path,
               build: Path | None = None) -> list[tuple[Path, bool]]:
    mounts: list[tuple[Path, bool]] = []
    if not recipe.build_in_source:
        mounts.append((src, False))
    mounts.append((work_dir(recipe.name, settings), True))
    if build is not None and not is_inside(build, work_dir(recipe.name, settings)):
        mounts.append((build, True))  # a borrowed build directory
    mounts.append((settings.prefix, False))
    tools = settings.tools
    if not is_inside(tools, settings.prefix):
        mounts.append((tools, False))
    if settings.ccache:
        mounts.append((settings.ccache_root, True))
    return mounts


def container_labels(name: str, settings: Settings) -> dict[str, str]:
    """Labels of a recipe's step containers (recipe and work dir: unique per workspace)."""
    return {"hermitbuild.recipe": name, "hermitbuild.work": str(work_dir(name, settings))}
