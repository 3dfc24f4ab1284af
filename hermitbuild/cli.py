"""Entry-point glue for doit: settings/recipes loaded once, logging set up once, and the
doit actions, which only wire the stage modules together.

Contract:
- :func:`context` loads the settings (from the environment) and the recipe set
  once per process and memoises them; :func:`setup_logging` installs the only
  log handler (stderr) of the program.
- :func:`action` / :func:`action_args` are the module-level (picklable) doit
  actions: ``tasks.py`` passes them the module-level function to run (``do_*`` and
  ``cmd_*`` below, never a name looked up in a table) and its arguments; they return
  ``doit.exceptions.TaskFailed`` carrying the rendered
  :class:`~hermitbuild.errors.HermitBuildError` (what, why, fix) instead of a
  traceback.  ``action_args`` receives doit's ``pos_arg`` list, with the arguments doit
  took for variables given back (:func:`with_eaten_arguments`).
- ``uptodate_*`` functions are cheap checks (file reads; at most one container
  runtime query for image existence): no network, no git.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import (build, cache, container, debug, doctor, fetch, gate, image, plan, progress, qemu, sbom,
               syscalls, toolchain_image, treedigest, treewatch)
from .errors import ConfigError, HermitBuildError
from .recipe import RecipeSet, load_recipes
from .settings import Settings, load_settings

logger = logging.getLogger(__name__)

_CONTEXT: tuple[Settings, RecipeSet] | None = None


def setup_logging(verbose: bool = False) -> None:
    """Install the program's one log handler (idempotent)."""
    root = logging.getLogger("hermitbuild")
    if getattr(root, "_hermitbuild_handler", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else
                                           "%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # every command is still written to the per-step log files
        logging.getLogger("hermitbuild.runner").setLevel(logging.WARNING)
    root._hermitbuild_handler = True  # type: ignore[attr-defined]


def load_context(settings: Settings) -> tuple[Settings, RecipeSet]:
    recipes = load_recipes(settings.recipes_dir, settings.patches_dir, settings.variant_values)
    toolchain_recipes(settings, recipes)  # a bad `skip` fails here, before any task runs
    return settings, recipes


def toolchain_recipes(settings: Settings, recipes: RecipeSet) -> tuple[str, ...]:
    """The recipes `doit toolchain` builds: all of them but those in ``settings.skip``.

    A skipped recipe must exist, and no recipe that stays may depend on it (that one
    would build it anyway); either mistake is a :class:`ConfigError` naming the fix."""
    where = settings.where("skip")
    unknown = [name for name in settings.skip if name not in recipes.recipes]
    if unknown:
        raise ConfigError(f"skip names no recipe called {', '.join(map(repr, unknown))}",
                          "use recipe names from recipes/*.yaml: " + ", ".join(recipes.order), **where)
    kept = tuple(name for name in recipes.order if name not in settings.skip)
    needed = {name: [k for k in kept if name in recipes[k].depends] for name in settings.skip}
    needed = {name: users for name, users in needed.items() if users}
    if needed:
        name, users = next(iter(needed.items()))
        raise ConfigError(f"'{name}' cannot be skipped: {', '.join(users)} depend(s) on it",
                          f"skip {', '.join(users)} as well, or take '{name}' out of skip", **where)
    return kept


def set_context(settings: Settings) -> tuple[Settings, RecipeSet]:
    """Use ``settings`` (and the recipes they point at) for this process (tests, embedding)."""
    global _CONTEXT
    _CONTEXT = load_context(settings)
    return _CONTEXT


def context() -> tuple[Settings, RecipeSet]:
    """Settings and recipes of this process (read once)."""
    global _CONTEXT
    if _CONTEXT is None:
        setup_logging(verbose=os.environ.get("HERMITBUILD_VERBOSE", "") not in ("", "0"))
        _CONTEXT = load_context(load_settings())
        treedigest.hash_overrides_once_per_run()  # this process is one doit run
        treewatch.configure(_CONTEXT[0].override_watch_seconds)  # watchers answer for the trees
        treedigest.list_together(_CONTEXT[0].overrides.values())  # taken when first needed
        progress.start_run()
    return _CONTEXT


def fail(err: HermitBuildError):
    from doit.exceptions import TaskFailed

    return TaskFailed(f"\n{err}\n")


def _recipes(settings: Settings) -> RecipeSet:
    if _CONTEXT is not None and _CONTEXT[0] == settings:
        return _CONTEXT[1]
    return load_context(settings)[1]


# --------------------------------------------------------------------------- actions

def do_base_image(settings: Settings) -> None:
    container.make_base_image(settings)


def do_container_image(settings: Settings, image_name: str) -> None:
    container.build_image(image_name, settings)


def do_download(settings: Settings, name: str) -> None:
    recipe = _recipes(settings)[name]
    if recipe.override_name(settings.overrides):  # a local source override needs no download
        return
    fetch.fetch_recipe(recipe, settings)


def do_prepare(settings: Settings, name: str) -> None:
    recipes = _recipes(settings)
    plan.ensure_prepared(recipes[name], recipes, settings)


def do_build(settings: Settings, name: str) -> None:
    start = time.monotonic()
    try:
        # with the smoke gate on, artifacts reach the remote only after `doit toolchain`'s smoke test
        build.build_recipe(name, _recipes(settings), settings, push=not gate.is_gated(settings))
    except (HermitBuildError, KeyboardInterrupt) as err:
        what = err.what if isinstance(err, HermitBuildError) else "interrupted"
        progress.record(name, "failed", time.monotonic() - start, settings, what)
        print(_summary(settings), flush=True)
        raise


def _summary(settings: Settings) -> str:
    recipes = _recipes(settings)

    def installed(name: str) -> bool:
        try:
            return build.is_installed(name, recipes, settings)
        except HermitBuildError:
            return False

    return progress.summary(toolchain_recipes(settings, recipes), settings.skip, settings, installed)


def do_summary(settings: Settings) -> None:
    """The end of `doit toolchain`: the table of the run, then the smoke gate when it applies."""
    names = toolchain_recipes(settings, _recipes(settings))
    skipped = f"; skipped: {', '.join(settings.skip)}" if settings.skip else ""
    print(_summary(settings))
    print(f"toolchain: {len(names)} recipes installed into {settings.prefix} "
          f"(gcc variant: {settings.gcc_variant}, target {settings.target}{skipped})")
    if gate.is_gated(settings):
        pushed = gate.enforce(list(names), settings, _smoke(settings))
        print(f"smoke test passed; pushed {len(pushed)} artifact(s) to {settings.remote_cache}")


def _available_syscalls(settings: Settings) -> list[str]:
    path = plan.table_path(settings)
    return list(syscalls.load_table(path).names()) if path.exists() else []


def _smoke(settings: Settings) -> qemu.SmokeResult:
    return qemu.smoke_main(settings, available_syscalls=_available_syscalls(settings),
                           exec_prefix=_exec_prefix(settings))


def do_smoke(settings: Settings) -> None:
    result = _smoke(settings)
    # the result goes into the installed artifacts: the toolchain image is pushed only after a pass
    names, _ = installed_manifests(settings, _recipes(settings))
    gate.record_and_push(names, settings, result.to_manifest())
    if not result.passed:
        raise HermitBuildError("smoke test failed", result.summary(),
                               "read the logs under build/logs/smoke, fix the toolchain, re-run `doit smoke`")


def action(fn: Callable[..., Any], settings: Settings, *args: Any):
    """A doit python-action: run ``fn(settings, *args)``; failures become clean TaskFailed messages.
    Actions may write: first what the uptodate checks left pending (override digest caches)."""
    treedigest.write_pending_digest_caches()
    try:
        fn(settings, *args)
    except HermitBuildError as err:
        return fail(err)
    except KeyboardInterrupt:
        from doit.exceptions import TaskFailed

        return TaskFailed("interrupted; re-run the same command to continue where it stopped")
    return None


# --------------------------------------------------------------------------- commands with arguments

def cmd_syscall(settings: Settings, args: list[str]) -> int:
    # automake 1.11 runs inside the build container, like every other build tool; the prepared
    # trees the command edits stay prepared (plan.run_syscall_command)
    try:
        recipes = _recipes(settings)
    except HermitBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return plan.run_syscall_command(args, recipes, settings, automake=plan.automake_in_container(settings))


def cmd_doctor(settings: Settings, args: list[str]) -> int:
    return doctor.main(args, settings, sorted({r.image for r in _recipes(settings)}))


def cmd_cache(settings: Settings, args: list[str]) -> int:
    return cache.cache_cli(args, settings)


def _exec_prefix(settings: Settings, args: Sequence[str] = (), *,
                 image_name: str = container.TOOLCHAIN_IMAGE, interactive: bool = False) -> list[str]:
    """Run the toolchain's programs in its build container (``/dev/kvm`` passed when usable)."""
    return container.toolchain_exec_prefix(settings, args, image=image_name, interactive=interactive,
                                           devices=["/dev/kvm"] if qemu.kvm_usable() else [])


def cmd_boot(settings: Settings, args: list[str]) -> int:
    return qemu.run_main(args, settings, exec_prefix=_exec_prefix(settings, args))


def cmd_debug(settings: Settings, args: list[str]) -> int:
    return debug.debug_main(args, settings, exec_prefix=_exec_prefix(settings, args),
                            interactive_prefix=_exec_prefix(settings, args, interactive=True))


def installed_manifests(settings: Settings, recipes: RecipeSet,
                        needed_for: str = "") -> tuple[list[str], dict[str, dict]]:
    """The installed toolchain recipes (in order) and the artifact manifests the local cache still holds.

    ``needed_for`` (e.g. "an SBOM"): none installed is then an error saying to build first."""
    local, _ = cache.open_caches(settings)
    names = [n for n in toolchain_recipes(settings, recipes) if build.is_installed(n, recipes, settings)]
    if needed_for and not names:
        raise HermitBuildError(f"no toolchain recipe is installed, so there is nothing to make {needed_for} of",
                               f"nothing is installed under {settings.prefix}", "run `doit toolchain` first")
    manifests: dict[str, dict] = {}
    for name in names:
        found = local.lookup(build.recipe_key(name, recipes, settings)[0])
        if found is not None:
            try:
                manifests[name] = cache.read_manifest(found[0])
            except HermitBuildError as exc:
                logger.warning("%s: %s; describing the installed files instead", name, exc.why)
    return names, manifests


def cmd_sbom(settings: Settings, args: list[str]) -> int:
    """`doit sbom [--output FILE]`: the SPDX 2.3 SBOM of the installed toolchain."""
    import argparse

    parser = argparse.ArgumentParser(prog="doit sbom", description=cmd_sbom.__doc__)
    parser.add_argument("--output", "-o", type=Path, default=settings.build_dir / "sbom.spdx.json")
    opts = parser.parse_args(args)
    recipes = _recipes(settings)
    names, manifests = installed_manifests(settings, recipes, needed_for="an SBOM")
    out = sbom.write_sbom(sbom.prefix_sbom(recipes, settings, names, manifests), opts.output)
    print(f"wrote {out}: SPDX 2.3, {len(names)} packages ({', '.join(names)})")
    return 0


def cmd_toolchain_image(settings: Settings, args: list[str]) -> int:
    """`doit toolchain_image [--push oci://REGISTRY/REPO]`: the installed toolchain as an OCI image."""
    import argparse

    parser = argparse.ArgumentParser(prog="doit toolchain_image", description=cmd_toolchain_image.__doc__)
    parser.add_argument("--push", metavar="URL", help="push both tags to this registry repository "
                        "(oci://HOST/REPO, or oci+http://HOST:PORT/REPO for plain HTTP); only after "
                        "`doit smoke` passed, with smoke_gate on")
    opts = parser.parse_args(args)
    recipes = _recipes(settings)
    names, manifests = installed_manifests(settings, recipes, needed_for="an image")
    if opts.push:
        toolchain_image.check_smoke_gate(names, manifests, settings)  # before minutes of work
    keys = {n: build.recipe_key(n, recipes, settings)[0] for n in names}
    img = toolchain_image.build_toolchain_image(names, keys, recipes, settings, manifests)
    print(f"built {', '.join(img.tags)}: {len(names)} recipe layers ({', '.join(names)}) and the SBOM")
    if opts.push:
        for ref in toolchain_image.push_toolchain_image(img, opts.push, settings, manifests):
            print(f"pushed {ref}")
    return 0


def cmd_image(settings: Settings, args: list[str]) -> int:
    image.image_main(args, settings, exec_prefix=_exec_prefix(settings, args))
    return 0


def with_eaten_arguments(task: str, args: Sequence[str], argv: Sequence[str]) -> list[str]:
    """The task's arguments as typed, also those doit took for variables.

    doit takes every argument that holds ``=`` and does not start with ``-`` as a doit
    variable (``doit x=1``), wherever it stands: ``--body 'return x == 1;'`` would lose its
    value.  ``argv`` (the process' command line) still has them: the arguments after the
    task's name are used when, without the ``=`` ones, they are exactly what doit passed."""
    args = list(args)
    for i in range(len(argv) - 1, -1, -1):
        if argv[i] != task:
            continue
        tail = list(argv[i + 1:])
        if tail != args and [a for a in tail if a.startswith("-") or "=" not in a] == args:
            return tail
        break
    return args


def action_args(fn: Callable[[Settings, list[str]], int], task: str, settings: Settings,
                args: list[str] | None = None, **options: str):
    """A doit python-action for ``doit TASK ARGS...``: ``fn(settings, args)``, a non-zero status fails.

    ``options``: the task's own ``--name VALUE`` options doit parsed (before the first positional
    argument), handed on as ``--name VALUE``."""
    from doit.exceptions import TaskFailed

    argv = [part for name, value in options.items() if value for part in (f"--{name}", value)]
    argv += with_eaten_arguments(task, args or [], sys.argv)
    try:
        status = fn(settings, argv)
    except HermitBuildError as err:
        return fail(err)
    except KeyboardInterrupt:
        return TaskFailed("interrupted")
    if status:
        return TaskFailed(f"`doit {task} {' '.join(shlex.quote(a) for a in argv)}` exited with status {status}")
    return None


# --------------------------------------------------------------------------- uptodate

def _safe(check: Callable[[], bool]) -> bool:
    """An uptodate check that cannot decide (bad input) says 'not up to date' so the action reports
    it.  Checks change nothing: the override digest caches are only read here."""
    try:
        with treedigest.digest_caches_read_only():
            return bool(check())
    except HermitBuildError as err:
        logger.debug("uptodate check failed: %s", err)
        return False


def uptodate_base_image(settings: Settings) -> bool:
    return _safe(lambda: container.base_image_exists(settings))


def uptodate_image(settings: Settings, image_name: str) -> bool:
    return _safe(lambda: container.image_exists(image_name, settings))


def uptodate_download(settings: Settings, name: str) -> bool:
    recipe = _recipes(settings)[name]
    if recipe.override_name(settings.overrides):
        return True
    return _safe(lambda: all(fetch.is_fetched(s, settings) for s in recipe.sources))


def uptodate_prepare(settings: Settings, name: str) -> bool:
    recipes = _recipes(settings)
    return _safe(lambda: plan.is_prepared(recipes[name], recipes, settings))


def uptodate_build(settings: Settings, name: str) -> bool:
    return _safe(lambda: build.is_installed(name, _recipes(settings), settings))
