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
     ``<stage>/<install root>`` (:func:`hermitbuild.cache.pack_artifact`), store it
     locally, push it when ``push`` and the remote is read-write, restore it into the
     install root and write the install stamp.
  5. after 3 or 4, paths the previous install stamp of this recipe listed and the new
     artifact does not (a file a newer version no longer installs) are removed from the
     install root, unless another recipe's install stamp lists them; directories only
     when empty.

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
    its cache and the objects: a new generated file is picked up) and the others
    re-run, so make rebuilds only what changed (the prepared tree keeps unchanged
    files' mtimes);
  * a build directory or stage that disappeared invalidates all stamps;
  * before any step runs, containers of this recipe and workspace left behind
    by a killed client (labels ``hermitbuild.recipe``/``hermitbuild.work``) are
    removed, so nothing else writes into the build directory.

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

from . import cache, container, doctor, fetch, plan, sbom
from .cache import keys
from .progress import history, live_step, record, remember, step_line
from .errors import BuildError, CommandError, ConfigError, ContainerError, HermitBuildError
from .recipe import Recipe, RecipeSet, Step, expand
from .fsutil import ensure_writable_dir, file_lock, is_inside, is_safe_relpath, read_json, rmtree, write_json
from .settings import Settings

logger = logging.getLogger(__name__)

TAIL_LINES = 40
CONFIGURE_KINDS = ("configure", "cmake")
DEFAULT_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------- keys and paths

recipe_key = keys.recipe_key
definition_key = keys.definition_key


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


def _steps_dir(name: str, settings: Settings) -> Path:
    return settings.stamps_dir / "steps" / name


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
    return all(os.path.lexists(root / rel) for rel in stamp.get("files", []))


def is_installed(name: str, recipes: RecipeSet, settings: Settings) -> bool:
    """Whether the install stamp holds the current key and its files are in the install root."""
    key, _ = recipe_key(name, recipes, settings)
    return _stamp_current(name, key, settings, recipes[name])


# --------------------------------------------------------------------------- helpers



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


def placeholders(recipe: Recipe, settings: Settings, src: Path) -> dict[str, str]:
    """The values of the recipe placeholders for a build of ``recipe`` from tree ``src``."""
    build = build_dir(recipe.name, settings)
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
                     epoch: int) -> dict[str, str]:
    env = {"PATH": f"{settings.prefix}/bin:{settings.tools}/bin:{DEFAULT_PATH}",
           "SOURCE_DATE_EPOCH": str(epoch)}
    env.update(recipe.environment(ctx))
    env.update(step.environment(ctx))
    return env


def mounts_for(recipe: Recipe, settings: Settings, src: Path) -> list[tuple[Path, bool]]:
    mounts: list[tuple[Path, bool]] = []
    if not recipe.build_in_source:
        mounts.append((src, False))
    mounts.append((work_dir(recipe.name, settings), True))
    mounts.append((settings.prefix, False))
    tools = settings.tools
    if not is_inside(tools, settings.prefix):
        mounts.append((tools, False))
    return mounts


def container_labels(name: str, settings: Settings) -> dict[str, str]:
    """Labels of a recipe's step containers (recipe and work dir: unique per workspace)."""
    return {"hermitbuild.recipe": name, "hermitbuild.work": str(work_dir(name, settings))}


def _copy_tree(src: Path, dest: Path) -> None:
    """A private copy of a prepared tree (symlinks kept, mtimes preserved)."""
    tmp = dest.with_name(dest.name + ".copying")
    rmtree(tmp)
    shutil.copytree(src, tmp, symlinks=True)
    rmtree(dest)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------- steps

def _plan_steps(recipe: Recipe, settings: Settings, key: str, defkey: str) -> list[bool]:
    """Which steps are done already; wipes the build dir when it cannot be trusted."""
    sdir = _steps_dir(recipe.name, settings)
    build = build_dir(recipe.name, settings)
    stamps = [read_json(sdir / f"{s.name}.json") for s in recipe.steps]
    running = read_json(sdir / "running.json")
    any_state = any(stamps) or running is not None
    reset = False
    skip_configure = False
    stage = stage_dir(recipe.name, settings)
    if any_state and not (build.is_dir() and stage.is_dir()):
        reset = True
        logger.info("%s: build directory %s or stage %s is gone; starting from the first step",
                    recipe.name, build, stage)
    foreign = [s for s in stamps if s and s.get("key") != key]
    if running is not None and running.get("key") != key:
        foreign.append(running)
    if not reset and foreign:
        same_definition = all(s.get("defkey") == defkey for s in foreign)
        if recipe.incremental and not recipe.build_in_source and same_definition and running is None:
            skip_configure = True
            logger.info("%s: only the source tree changed; incremental rebuild in %s", recipe.name, build)
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
        rmtree(stage)
        if reset:
            rmtree(build)
        if skip_configure:
            stage.mkdir(parents=True, exist_ok=True)
            # autotools' configure is kept; cmake re-runs (incrementally) to see new files
            done = [s.kind == "configure" for s in recipe.steps]
            for s, d in zip(recipe.steps, done):
                if d:
                    write_json(sdir / f"{s.name}.json", {"key": key, "defkey": defkey, "step": s.name,
                                                          "index": recipe.steps.index(s),
                                                          "incremental": True})
            return done
        return [False] * len(recipe.steps)
    done = [bool(s and s.get("key") == key) for s in stamps]
    # once a step has to run, every later step runs too
    first = next((i for i, d in enumerate(done) if not d), len(done))
    return [i < first for i in range(len(done))]


def run_steps(recipe: Recipe, recipes: RecipeSet, settings: Settings, *, key: str, defkey: str,
              src: Path) -> None:
    """Run the recipe's steps that are not done yet (see the module docstring)."""
    name = recipe.name
    sdir = _steps_dir(name, settings)
    build = build_dir(name, settings)
    done = _plan_steps(recipe, settings, key, defkey)
    n = len(recipe.steps)
    if all(done) and build.is_dir():
        return
    ctx = placeholders(recipe, settings, src)
    epoch = source_date_epoch(recipe, recipes, settings)
    mounts = mounts_for(recipe, settings, src)
    labels = container_labels(name, settings)
    container.remove_labelled(labels, settings)
    for i, step in enumerate(recipe.steps):
        label = f"[{i + 1}/{n}] {name}:{step.name}"
        if done[i]:
            step_line(f"{label} already done")
            continue
        write_json(sdir / "running.json", {"key": key, "defkey": defkey, "step": step.name, "index": i})
        if i == 0 or not build.is_dir():
            if recipe.build_in_source:
                _copy_tree(src, build)
            build.mkdir(parents=True, exist_ok=True)
        stage_dir(name, settings).mkdir(parents=True, exist_ok=True)
        argv = step.argv(ctx)
        env = step_environment(recipe, step, settings, ctx, epoch)
        cwd = Path(ctx["build"] if step.cwd == "build" else ctx["src"])
        log = step_log(name, step.name, settings)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("", encoding="utf-8")
        start = time.monotonic()
        limit = settings.step_timeout_seconds
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
        write_json(sdir / f"{step.name}.json", {"key": key, "defkey": defkey, "step": step.name,
                                                 "index": i, "seconds": round(seconds, 3)})
        remember(name, step.name, seconds, log, settings)
        step_line(f"{label} done in {seconds:.1f}s")
    (sdir / "running.json").unlink(missing_ok=True)


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
        run_steps(recipe, recipes, settings, key=key, defkey=defkey, src=Path(src))
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
        record(name, "built", time.monotonic() - start, settings, f"{len(files)} files")


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
