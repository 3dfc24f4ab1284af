"""Running a recipe's build steps: containers, stamps, resume, incremental rebuilds (the directories,
placeholders, environment and mounts are :mod:`hermitbuild.layout`'s).

Contract:
- :func:`run_steps` ``(recipe, recipes, settings, key=, defkey=, src=)`` runs the steps of
  ``recipe`` that are not done yet, each in a fresh container, and leaves what the install
  steps put into ``{stage}``; :mod:`hermitbuild.build` packs and installs it.  It returns
  whether the build was incremental (:func:`was_incremental`: the build packs its artifact
  at a faster zstd level then).

- Directories: the prepared tree ``settings.src_dir/<tree owner>`` is ``{src}``,
  mounted read-only; ``{build}`` = ``<work>/<name>/build`` (an out-of-tree build
  dir; for ``build_in_source`` recipes it is a private copy of the tree, made at
  the start of the first step, and ``{src}`` points there too); ``{stage}`` =
  ``<work>/<name>/stage`` is the DESTDIR of install steps.  ``<work>/<name>`` is
  mounted read-write, the prefix and the tools prefix read-only (dependencies are
  installed there; nothing but the final restore writes into them).  Every mount
  has the same path inside and outside, so paths baked into binaries stay right.
  Environment: ``LC_ALL=C``, ``HOME=/tmp``, ``SOURCE_DATE_EPOCH`` (the commit date
  of the tree's git source, else the recipe's ``source_date_epoch``, else 0),
  ``PATH={prefix}/bin:{tools}/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin``
  (a recipe or step ``env`` may override it), then the recipe's and the step's env.
  Network off; the invoking user's uid:gid.  ``{jobs}`` = ``settings.parallel_jobs``.
  A marker (``<stamps>/steps/<name>/container.json``) lives while a step's container runs;
  one left by a killed client makes the next run remove the recipe's labelled containers
  first (:func:`hermitbuild.container.remove_labelled`): no runtime call otherwise.

- Logs and console: every step writes ``<logs>/<name>/<step>.log`` (started
  afresh by every attempt of the step); :func:`hermitbuild.progress.step_line` prints one line per step:
  ``[k/n] name:step done in 12.3s`` (or ``... already done``).  A failing step
  raises :class:`~hermitbuild.errors.BuildError` with the recipe, step, exact
  command, log path and the last 40 lines of its output; when the container
  runtime itself failed (exit 125/126 with its error text) a
  :class:`~hermitbuild.errors.ContainerError` points at ``runtime_options``.
  A step that runs longer than the ``step_timeout`` setting is killed (its container
  removed) and raises :class:`~hermitbuild.errors.BuildError` saying so; it is redone
  on the next run like any unfinished step.

- Resume (step stamps ``<stamps>/steps/<name>/<step>.json`` hold the key and the
  step index; ``running.json`` marks the step in progress):

  * a finished step whose stamp holds the current key is not redone;
  * a step that did not finish (Ctrl-C, killed container, failure: its
    ``running`` marker is still there) is redone.  If it is configure-like (kind
    ``configure`` or ``cmake``, or the first step) the build directory and the
    stage are wiped and the build restarts from step 1 (a half-run configure
    leaves a build directory that cannot be trusted).  A later step (``make``,
    ``install``, ``run``) is re-run in the same build directory: make is
    restartable and finished steps before it stay done;
  * stamps from another key (the recipe, its tree, image or dependencies
    changed) wipe the build directory and stage and restart from step 1 -
    except for ``incremental`` recipes built out of tree when only their own
    tree or the syscall table changed (:func:`definition_key`: the key with this
    recipe's tree left out and every tree as the empty table leaves it, is
    unchanged): then the build directory is kept, ``configure`` steps are
    skipped, ``cmake`` steps re-run in it (cmake re-globs the sources and keeps
    its cache and the objects: a new generated file is picked up) unless no file
    was added to or removed from the tree since they last ran (the tree's names
    digest, :func:`hermitbuild.treedigest.tree_names`, in their stamps: the globs
    would find the same files), steps marked
    ``incremental: skip`` are left out (a later step, ``make install``, builds what
    changed) and the others re-run, so make rebuilds only what changed (the
    prepared tree keeps unchanged files' mtimes).  An incremental recipe's finished build of
    another definition is not deleted but parked (:mod:`hermitbuild.buildpark`, one slot per
    recipe); when that definition is built again (an override edit put back, then a table
    change) its build directory comes back and the rebuild is incremental as above;
  * a build directory or stage that disappeared invalidates all stamps;
  * before any step runs, containers of this recipe and workspace left behind
    by a killed client (labels ``hermitbuild.recipe``/``hermitbuild.work``) are
    removed, so nothing else writes into the build directory.

- Borrowed build directory (``build_from: R``): the steps run in R's build directory
  (``{build}``; mounted read-write, R's lock held).  When R's steps that this recipe starts
  with (same names, commands and environment after the placeholders) finished there with
  R's current key (:func:`reusable_steps`), they count as done and only the rest run.
  Otherwise (R came from the artifact cache, its directory was deleted or is from another
  key) every step runs there from the first, after the directory is emptied and R's step
  stamps removed: the same commands in the same absolute paths, so the same artifact
  either way; the shared steps done so are then stamped as R's (with R's key), so the next
  build of this recipe continues after them.  A reset after the shared steps never deletes the directory (the recipe's
  first own step must clean what it builds there); a step stamp records the directory.
- ccache (setting ``ccache``): ``/usr/lib/ccache`` first in ``PATH``, ``CCACHE_DIR`` =
  ``settings.ccache_root`` (mounted read-write), ``CCACHE_BASEDIR`` = the build directory
  root, ``CCACHE_NOHASHDIR``, ``STAGE_CC_WRAPPER=ccache`` (GCC's top-level Makefile puts it
  before its target compilers, the ``xgcc``/``xg++`` of the build tree that compile libgcc and
  libstdc++: no link in ``/usr/lib/ccache`` names them), ``CCACHE_COMPILERCHECK=string:<id>`` with the id of
  :func:`hermitbuild.cache.keys.compiler_identity` (the image and the keys of the dependencies
  that provide compilers, ``provides_compiler``: a cross compiler rebuilt from the same inputs
  keeps its hits, whatever its files' mtimes);
  each recipe's counters are logged to
  ``<work>/<name>/ccache-stats.log`` and summarised by :func:`ccache_summary`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Mapping

from . import buildpark, container
from .treedigest import tree_names
from .cache import keys
from .progress import history, live_step, remember, step_line
from .errors import BuildError, CommandError, ConfigError, ContainerError
from .recipe import Recipe, RecipeSet, Step
from .fsutil import discard, ensure_writable_dir, file_lock, read_json, rmtree, wait_discards, write_json
from .settings import Settings
from .layout import (build_dir, container_labels, mounts_for, placeholders, source_date_epoch, stage_dir,
                     step_environment, step_log, steps_dir, work_dir)

logger = logging.getLogger(__name__)

CONFIGURE_KINDS = ("configure", "cmake")
def _copy_tree(src: Path, dest: Path) -> None:
    """A private copy of a prepared tree (symlinks kept, mtimes preserved)."""
    tmp = dest.with_name(dest.name + ".copying")
    rmtree(tmp)
    shutil.copytree(src, tmp, symlinks=True)
    rmtree(dest)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------- borrowed build directory

def _same_step(mine: Step, my_ctx: Mapping[str, str], theirs: Step, their_ctx: Mapping[str, str]) -> bool:
    return (mine.name == theirs.name and mine.kind == theirs.kind and mine.cwd == theirs.cwd
            and mine.argv(my_ctx) == theirs.argv(their_ctx)
            and mine.environment(my_ctx) == theirs.environment(their_ctx))


def shared_steps(recipe: Recipe, recipes: RecipeSet, settings: Settings, src: Path) -> int:
    """How many leading steps ``recipe`` has in common with its ``build_from`` recipe: the
    same names, kinds, commands and environments once the placeholders are filled in (with
    the other recipe's build directory as ``{build}``)."""
    if not recipe.build_from:
        return 0
    owner = recipes[recipe.build_from]
    owner_build = build_dir(owner.name, settings)
    mine = placeholders(recipe, settings, src, owner_build)
    theirs = placeholders(owner, settings, src)
    if recipe.environment(mine) != owner.environment(theirs):
        return 0
    n = 0
    for a, b in zip(recipe.steps, owner.steps):
        if not _same_step(a, mine, b, theirs):
            break
        n += 1
    return n


def reusable_steps(recipe: Recipe, recipes: RecipeSet, settings: Settings, src: Path) -> int:
    """How many of ``recipe``'s leading steps its ``build_from`` recipe's build directory
    holds already: the shared steps (:func:`shared_steps`) when they all finished there with
    that recipe's current key and none of its steps is running (the state a from-scratch
    build of ``recipe`` reaches after them), else 0."""
    n = shared_steps(recipe, recipes, settings, src)
    if n == 0:
        return 0
    owner = recipes[recipe.build_from or ""]
    build = build_dir(owner.name, settings)
    sdir = steps_dir(owner.name, settings)
    if not build.is_dir() or (sdir / "running.json").exists():
        return 0
    owner_key, _ = keys.recipe_key(owner.name, recipes, settings)
    for step in owner.steps[:n]:
        stamp = read_json(sdir / f"{step.name}.json")
        if not stamp or stamp.get("key") != owner_key:
            return 0
    return n


# --------------------------------------------------------------------------- steps

def _stamp_build(stamp: Mapping[str, object], own: Path) -> str:
    return str(stamp.get("build") or own)


def _park(recipe: Recipe, settings: Settings, build: Path, stamps: list[dict | None], defkey: str) -> bool:
    """Park the finished build of another definition (:mod:`hermitbuild.buildpark`); True when
    the build parked for ``defkey`` is back in ``build``."""
    defkeys = {s.get("defkey") if s else None for s in stamps}
    old = defkeys.pop() if len(defkeys) == 1 else None
    return buildpark.swap(work_dir(recipe.name, settings) / "parked", build, steps_dir(recipe.name, settings),
                          old if isinstance(old, str) else None, defkey, [s.name for s in recipe.steps])


def plan_steps(recipe: Recipe, settings: Settings, key: str, defkey: str, build: Path | None = None,
               borrowed: int = 0, src: Path | None = None) -> list[bool]:
    """Which steps are done already; wipes the build dir when it cannot be trusted.

    ``build`` is where the steps run (default: the recipe's own build directory);
    with ``borrowed`` > 0 it is another recipe's, whose first ``borrowed`` steps count as
    done, and it is never deleted here.  ``src``: the prepared tree, whose file names decide
    whether an incremental rebuild re-runs a ``cmake`` step (:func:`~hermitbuild.treedigest.tree_names`)."""
    sdir = steps_dir(recipe.name, settings)
    own = build_dir(recipe.name, settings)
    build = build or own
    stamps = [read_json(sdir / f"{s.name}.json") for s in recipe.steps]
    running = read_json(sdir / "running.json")
    # a stamp from a run in another build directory (own against borrowed) is not this one's
    stamps = [None if s and _stamp_build(s, own) != str(build) else s for s in stamps]
    if running is not None and _stamp_build(running, own) != str(build):
        running = {**running, "key": None}
    any_state = any(stamps) or running is not None
    if not any_state and not borrowed and build.exists():
        # nothing vouches for this directory (a build_from recipe built in it from scratch and
        # removed this recipe's stamps, or it was left by hand): start from an empty one
        discard(build)
    reset = False
    skip_configure = False
    stage = stage_dir(recipe.name, settings)
    if any_state and not (build.is_dir() and stage.is_dir()):
        reset = True
        logger.info("%s: build directory %s or stage %s is gone; starting from the first step",
                    recipe.name, build, stage)
    foreign = [s for s in stamps[borrowed:] if s and s.get("key") != key]
    if running is not None and running.get("key") != key:
        foreign.append(running)
    if not reset and foreign:
        same_definition = all(s.get("defkey") == defkey for s in foreign)
        kept = recipe.incremental and not recipe.build_in_source and running is None and not borrowed
        if kept and same_definition:
            skip_configure = True
            logger.info("%s: only the source tree changed; incremental rebuild in %s", recipe.name, build)
        elif kept and _park(recipe, settings, build, stamps, defkey):
            skip_configure = True
            stamps = [read_json(sdir / f"{s.name}.json") for s in recipe.steps]
            logger.info("%s: the definition is one built before; incremental rebuild in its build "
                        "directory %s", recipe.name, build)
        else:
            reset = True
            logger.info("%s: inputs changed; starting from a clean build directory", recipe.name)
    if not reset and running is not None and running.get("key") == key:
        idx = running.get("index", 0)
        step = recipe.steps[idx] if isinstance(idx, int) and 0 <= idx < len(recipe.steps) else None
        if step is None or idx == 0 or step.kind in CONFIGURE_KINDS:
            reset = True
            logger.info("%s: step '%s' did not finish; redoing from a clean build directory",
                        recipe.name, running.get("step"))
    if reset or skip_configure:
        for s in recipe.steps:
            (sdir / f"{s.name}.json").unlink(missing_ok=True)
        (sdir / "running.json").unlink(missing_ok=True)
        (sdir / "incremental.json").unlink(missing_ok=True)
        discard(stage)  # deleted while the next step's container starts
        if reset and not borrowed:
            discard(build)
        if skip_configure:
            write_json(sdir / "incremental.json", {"key": key, "build": str(build)})
            stage.mkdir(parents=True, exist_ok=True)
            # autotools' configure is kept; cmake re-runs (incrementally) to see new files, unless
            # no file was added or removed since it last ran (its globs would find the same); a
            # step marked `incremental: skip` is left to a later one (make install builds too)
            names = tree_names(src) if src is not None and any(
                s.kind == "cmake" for s in recipe.steps) else None
            done = [s.kind == "configure" or s.incremental == "skip"
                    or (s.kind == "cmake" and names is not None and bool(old)
                        and old.get("tree_names") == names)
                    for s, old in zip(recipe.steps, stamps)]
            for i, (s, d) in enumerate(zip(recipe.steps, done)):
                if d:
                    extra = {"tree_names": names} if s.kind == "cmake" else {}
                    write_json(sdir / f"{s.name}.json", {"key": key, "defkey": defkey, "step": s.name,
                                                          "index": i, "build": str(build),
                                                          "incremental": True, **extra})
            return done
        return [i < borrowed for i in range(len(recipe.steps))]
    done = [i < borrowed or bool(s and s.get("key") == key) for i, s in enumerate(stamps)]
    # once a step has to run, every later step runs too
    first = next((i for i, d in enumerate(done) if not d), len(done))
    return [i < first for i in range(len(done))]


def run_steps(recipe: Recipe, recipes: RecipeSet, settings: Settings, *, key: str, defkey: str,
              src: Path) -> bool:
    """Run the recipe's steps that are not done yet (see the module docstring); True when this
    was an incremental rebuild (the kept build directory; steps were left out for it)."""
    if not recipe.build_from:
        _run(recipe, recipes, settings, key=key, defkey=defkey, src=src,
             build=build_dir(recipe.name, settings), borrowed=0)
        return was_incremental(recipe, settings, key)
    owner = recipe.build_from
    with file_lock(steps_dir(owner, settings) / ".lock"):
        shared = reusable_steps(recipe, recipes, settings, src)
        if shared:
            logger.info("%s: continuing in %s's build directory after its first %d step(s)",
                        recipe.name, owner, shared)
        else:
            logger.info("%s: %s's build directory does not hold its finished steps (restored from the "
                        "cache, deleted, or from another key): building from the first step there",
                        recipe.name, owner)
            # the shared steps run here are the owner's own (same commands, directory, tree and
            # image): once done, they are stamped as the owner's, so the next build of this recipe
            # continues after them instead of compiling them again
            vouch = (shared_steps(recipe, recipes, settings, src), keys.recipe_key(owner, recipes, settings)[0],
                     keys.definition_key(owner, recipes, settings))
        _run(recipe, recipes, settings, key=key, defkey=defkey, src=src,
             build=build_dir(owner, settings), borrowed=shared, vouch=None if shared else vouch)
    return False


def was_incremental(recipe: Recipe, settings: Settings, key: str) -> bool:
    """Whether the steps for ``key`` ran as an incremental rebuild: in a build directory kept
    from a build of another tree (``incremental.json``, written when :func:`plan_steps` chose
    that and removed whenever it starts afresh)."""
    stamp = read_json(steps_dir(recipe.name, settings) / "incremental.json")
    return bool(stamp and stamp.get("key") == key)


def _run(recipe: Recipe, recipes: RecipeSet, settings: Settings, *, key: str, defkey: str, src: Path,
         build: Path, borrowed: int, vouch: tuple[int, str, str] | None = None) -> None:
    name = recipe.name
    sdir = steps_dir(name, settings)
    done = plan_steps(recipe, settings, key, defkey, build, borrowed, src=src)
    n = len(recipe.steps)
    if all(done) and build.is_dir():
        return
    ctx = placeholders(recipe, settings, src, build)
    epoch = source_date_epoch(recipe, recipes, settings)
    mounts = mounts_for(recipe, settings, src, build)
    labels = container_labels(name, settings)
    marker = sdir / "container.json"  # only a killed client leaves it: its container may still run
    if marker.exists():
        container.remove_labelled(labels, settings)
        marker.unlink()
    compiler_id = ""
    if settings.ccache:
        ensure_writable_dir(settings.ccache_root, "ccache_dir", ConfigError)
        (work_dir(name, settings) / "ccache-stats.log").unlink(missing_ok=True)
        compiler_id = keys.compiler_identity(name, recipes, settings)
    for i, step in enumerate(recipe.steps):
        label = f"[{i + 1}/{n}] {name}:{step.name}"
        if i < borrowed:
            step_line(f"{label} done already in {recipe.build_from}'s build directory")
            continue
        if done[i]:
            stamp = read_json(sdir / f"{step.name}.json") or {}
            if step.incremental == "skip" and stamp.get("incremental"):
                step_line(f"{label} left out of this incremental rebuild (a later step builds)")
            elif step.kind == "cmake" and stamp.get("incremental"):
                step_line(f"{label} left out of this incremental rebuild (no file was added to or "
                          "removed from the tree: cmake's globs find the same files)")
            else:
                step_line(f"{label} already done")
            continue
        write_json(sdir / "running.json", {"key": key, "defkey": defkey, "step": step.name, "index": i,
                                           "build": str(build)})
        if i == 0 and recipe.build_from and not borrowed:
            # building from the first step in another recipe's directory: what is there is
            # stale, and that recipe's stamps must no longer vouch for it
            discard(build)
            for stamp in steps_dir(recipe.build_from, settings).glob("*.json"):
                stamp.unlink()
        if i == 0 or not build.is_dir():
            if recipe.build_in_source:
                _copy_tree(src, build)
            build.mkdir(parents=True, exist_ok=True)
        stage_dir(name, settings).mkdir(parents=True, exist_ok=True)
        argv = step.argv(ctx)
        env = step_environment(recipe, step, settings, ctx, epoch, compiler_id)
        cwd = Path(ctx["build"] if step.cwd == "build" else ctx["src"])
        log = step_log(name, step.name, settings)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("", encoding="utf-8")
        start = time.monotonic()
        limit = settings.step_timeout_seconds
        write_json(marker, {"step": step.name, "labels": dict(labels)})
        try:
            with live_step(label, log, history(name, settings).get(step.name)):
                result = container.run_in_container(recipe.image, argv, settings, cwd=cwd, mounts=mounts,
                                                    env=env, log_path=log, check=False, timeout=limit,
                                                    label=f"{name}-{step.name}", labels=labels)
        except CommandError as err:  # check=False: a timeout (the container is gone), or no runtime
            if limit is None or not err.timed_out:
                raise
            seconds = time.monotonic() - start
            step_line(f"{label} TIMED OUT after {seconds:.1f}s (log: {log})")
            raise BuildError(name, step.name, argv, log, err.tail, None,
                             status=f"killed after the step_timeout of {settings.step_timeout}",
                             fix=f"read {log} to see where it hung; if the step is just slow, raise "
                             "step_timeout (hermitbuild.yaml or HERMITBUILD_STEP_TIMEOUT) and re-run: "
                             "finished steps are not redone") from None
        marker.unlink()  # the container is gone (run with --rm, waited for)
        seconds = time.monotonic() - start
        if result.returncode != 0:
            step_line(f"{label} FAILED after {seconds:.1f}s (log: {log})")
            if container.runtime_failure(result.returncode, result.tail):
                runtime = container.detect_runtime(settings)
                cause, fix = container.explain_runtime_failure(runtime, result.tail)
                raise ContainerError(
                    f"the container runtime could not run step '{step.name}' of recipe '{name}'",
                    f"{cause}; {Path(runtime).name} exited with {result.returncode} before the step's "
                    "command ran:\n" + "\n".join(
                        "    | " + line for line in result.tail.splitlines()[-8:]),
                    f"{fix}; `doit doctor` checks the runtime; full log: {log}",
                    recipe=name, step=step.name, log_path=str(log), returncode=result.returncode)
            raise BuildError(name, step.name, argv, log, result.tail, result.returncode)
        names = {"tree_names": tree_names(src)} if step.kind == "cmake" and recipe.incremental else {}
        write_json(sdir / f"{step.name}.json", {"key": key, "defkey": defkey, "step": step.name,
                                                 "index": i, "build": str(build),
                                                 "seconds": round(seconds, 3), **names})
        if vouch is not None and i < vouch[0] and recipe.build_from:
            write_json(steps_dir(recipe.build_from, settings) / f"{step.name}.json",
                       {"key": vouch[1], "defkey": vouch[2], "step": step.name, "index": i,
                        "build": str(build), "by": name, "seconds": round(seconds, 3)})
        remember(name, step.name, seconds, log, settings)
        step_line(f"{label} done in {seconds:.1f}s")
    (sdir / "running.json").unlink(missing_ok=True)
    wait_discards()  # the old stage or build directory, deleted meanwhile


# --------------------------------------------------------------------------- ccache

def ccache_summary(name: str, settings: Settings) -> str:
    """``ccache 812 hits, 40 misses`` for the steps of ``name`` that ran last ('' without
    ccache or when nothing was compiled); from ccache's stats log (one counter per line)."""
    log = work_dir(name, settings) / "ccache-stats.log"
    if not settings.ccache or not log.is_file():
        return ""
    hits = misses = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        word = line.strip()
        if word.endswith("_cache_hit"):
            hits += 1
        elif word == "cache_miss":
            misses += 1
    if not hits and not misses:
        return ""
    return f"ccache {hits} hits, {misses} misses"
