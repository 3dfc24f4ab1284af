"""Entry-point glue for doit: settings/recipes loaded once, logging set up once,
actions that turn errors into clean task failures.

Contract:
- :func:`context` loads the settings (from the environment) and the recipe set
  once per process and memoises them; :func:`setup_logging` installs the only
  log handler (stderr) of the program.
- :func:`action` / :func:`action_args` are the module-level (picklable) doit
  actions; they dispatch by name to the stage modules and return
  ``doit.exceptions.TaskFailed`` carrying the rendered
  :class:`~hermitbuild.errors.HermitBuildError` (what, why, fix) instead of a
  traceback.  ``action_args`` receives doit's ``pos_arg`` list.
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

from . import progress
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
        from . import prepare

        setup_logging(verbose=os.environ.get("HERMITBUILD_VERBOSE", "") not in ("", "0"))
        _CONTEXT = load_context(load_settings())
        prepare.hash_overrides_once_per_run()  # this process is one doit run
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

def _do_base_image(settings: Settings) -> None:
    from . import container

    container.make_base_image(settings)


def _do_container_image(settings: Settings, image: str) -> None:
    from . import container

    container.build_image(image, settings)


def _do_download(settings: Settings, name: str) -> None:
    from . import fetch

    if name in settings.overrides:  # a local source override needs no download
        return
    fetch.fetch_recipe(_recipes(settings)[name], settings)


def _do_prepare(settings: Settings, name: str) -> None:
    from . import plan

    recipes = _recipes(settings)
    plan.ensure_prepared(recipes[name], recipes, settings)


def _do_build(settings: Settings, name: str) -> None:
    from . import build

    start = time.monotonic()
    try:
        # with the smoke gate on, artifacts reach the remote only after `doit toolchain`'s smoke test
        build.build_recipe(name, _recipes(settings), settings, push=not build.push_is_gated(settings))
    except (HermitBuildError, KeyboardInterrupt) as err:
        what = err.what if isinstance(err, HermitBuildError) else "interrupted"
        progress.record(name, "failed", time.monotonic() - start, settings, what)
        print(_summary(settings), flush=True)
        raise


def _summary(settings: Settings) -> str:
    from . import build

    recipes = _recipes(settings)

    def installed(name: str) -> bool:
        try:
            return build.is_installed(name, recipes, settings)
        except HermitBuildError:
            return False

    return progress.summary(toolchain_recipes(settings, recipes), settings.skip, settings, installed)


def _do_summary(settings: Settings) -> None:
    from . import build

    names = toolchain_recipes(settings, _recipes(settings))
    skipped = f"; skipped: {', '.join(settings.skip)}" if settings.skip else ""
    print(_summary(settings))
    print(f"toolchain: {len(names)} recipes installed into {settings.prefix} "
          f"(gcc variant: {settings.gcc_variant}, target {settings.target}{skipped})")
    if build.push_is_gated(settings):
        _gate(settings, list(names))


def _gate(settings: Settings, names: list[str]) -> None:
    """The smoke gate: boot the examples; record the result in the artifacts; push only on success."""
    from . import build, qemu

    result = qemu.smoke_main(settings, available_syscalls=_available_syscalls(settings),
                             exec_prefix=_exec_prefix(settings))
    pushed = build.record_smoke_and_push(names, settings, result.to_manifest())
    if not result.passed:
        raise HermitBuildError("smoke test failed: the toolchain was not pushed to the remote cache",
                               result.summary(),
                               "fix the toolchain (see the logs under build/logs), or set smoke_gate: false "
                               "to push without booting")
    print(f"smoke test passed; pushed {len(pushed)} artifact(s) to {settings.remote_cache}")


def _available_syscalls(settings: Settings) -> list[str]:
    from . import plan, syscalls

    path = plan.table_path(settings)
    return list(syscalls.load_table(path).names()) if path.exists() else []


def _do_smoke(settings: Settings) -> None:
    from . import qemu

    result = qemu.smoke_main(settings, available_syscalls=_available_syscalls(settings),
                             exec_prefix=_exec_prefix(settings))
    if not result.passed:
        raise HermitBuildError("smoke test failed", result.summary(),
                               "read the logs under build/logs/smoke, fix the toolchain, re-run `doit smoke`")


ACTIONS: dict[str, Callable[..., Any]] = {
    "base_image": _do_base_image,
    "container_image": _do_container_image,
    "download": _do_download,
    "prepare": _do_prepare,
    "build": _do_build,
    "summary": _do_summary,
    "smoke": _do_smoke,
}


def action(kind: str, settings: Settings, *args: Any):
    """A doit python-action: run stage ``kind``; failures become clean TaskFailed messages."""
    try:
        ACTIONS[kind](settings, *args)
    except HermitBuildError as err:
        return fail(err)
    except KeyboardInterrupt:
        from doit.exceptions import TaskFailed

        return TaskFailed("interrupted; re-run the same command to continue where it stopped")
    return None


def _cmd_syscall(settings: Settings, args: list[str]) -> int:
    from . import plan, syscalls

    # automake 1.11 runs inside the build container, like every other build tool
    return syscalls.cli_main(args, settings, automake=plan.automake_in_container(settings))


def _cmd_doctor(settings: Settings, args: list[str]) -> int:
    from . import doctor

    return doctor.main(args, settings, sorted({r.image for r in _recipes(settings)}))


def _cmd_cache(settings: Settings, args: list[str]) -> int:
    from . import cache

    return cache.cache_cli(args, settings)


TOOLCHAIN_IMAGE = "toolchain"
_SYSTEM_DIRS = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run",
                          "sbin", "sys", "usr", "tmp", "var"})


def _would_shadow(directory: Path) -> bool:
    """Whether mounting ``directory`` at the same path would hide a system directory of the image."""
    parts = directory.parts
    if len(parts) <= 1:
        return True  # "/"
    if len(parts) == 2:
        return parts[1] in _SYSTEM_DIRS
    return len(parts) == 3 and parts[1] in _SYSTEM_DIRS - {"tmp", "var", "run"}


def _app_mounts(args: Sequence[str]) -> list[tuple[Path, bool]]:
    """Read-only mounts for the files a ``doit boot``/``doit image`` command line names.

    Every argument before ``--`` that is an existing path counts (the application: a
    ``.c`` file, a directory of them or a built unikernel); its directory is mounted,
    so headers beside the sources are seen.  A directory that would hide a system
    directory of the image (``/``, ``/tmp``, ``/usr/bin``...) is not mounted; a file
    in one is mounted alone.
    """
    mounts: list[tuple[Path, bool]] = []
    for arg in args:
        if arg == "--":
            break
        if not arg or arg.startswith("-"):
            continue
        path = Path(arg).absolute()
        if not path.exists():
            continue
        directory = path if path.is_dir() else path.parent
        if not _would_shadow(directory):
            mounts.append((directory, False))
        elif path.is_file():
            mounts.append((path, False))
        else:
            logger.warning("not mounting %s into the toolchain container (it would hide the "
                           "container's own %s); move the application to a directory of its own",
                           path, path)
    return mounts


def _exec_prefix(settings: Settings, args: Sequence[str] = (), *, image: str = TOOLCHAIN_IMAGE) -> list[str]:
    """Run toolchain programs where the toolchain runs: in its build container (issue 7).

    The compiler and the proxy (which starts qemu: the toolchain image holds it) run in a
    fresh container of ``image`` with, at the same paths: the prefix (read-only), the build
    directory (read-write: compile outputs under work/, logs), the repository root
    (read-only: examples/) and the application named in ``args`` (read-only, see
    :func:`_app_mounts`); ``--device /dev/kvm`` when KVM is usable here.  The network
    stays off: the proxy talks to qemu over the container's own loopback.  Without any
    container runtime the programs run on this host (with a warning).
    """
    from . import container
    from .errors import ContainerError
    from .qemu import kvm_usable

    try:
        container.detect_runtime(settings)
    except ContainerError as err:
        logger.warning("%s: running the toolchain on this host instead of in its build container "
                       "(%s)", err.what, err.fix)
        return []
    mounts: list[tuple[Path, bool]] = [(settings.prefix, False), (settings.build_dir, True),
                                       (settings.root, False), *_app_mounts(args)]
    devices = ["/dev/kvm"] if kvm_usable() else []
    return container.exec_prefix(image, settings, mounts=mounts, devices=devices,
                                 cwd=settings.build_dir)


def _cmd_run(settings: Settings, args: list[str]) -> int:
    from . import qemu

    return qemu.run_main(args, settings, exec_prefix=_exec_prefix(settings, args))


def _cmd_image(settings: Settings, args: list[str]) -> int:
    from . import image

    image.image_main(args, settings, exec_prefix=_exec_prefix(settings, args))
    return 0


COMMANDS: dict[str, Callable[[Settings, list[str]], int]] = {
    "syscall": _cmd_syscall,
    "cache": _cmd_cache,
    "doctor": _cmd_doctor,
    "run": _cmd_run,
    "image": _cmd_image,
}


TASK_NAMES = {"run": "boot"}  # the doit task of each command, where the names differ


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


def action_args(kind: str, settings: Settings, args: list[str] | None = None):
    """A doit python-action taking the command line's positional arguments (``pos_arg``)."""
    from doit.exceptions import TaskFailed

    argv = with_eaten_arguments(TASK_NAMES.get(kind, kind), args or [], sys.argv)
    try:
        status = COMMANDS[kind](settings, argv)
    except HermitBuildError as err:
        return fail(err)
    except KeyboardInterrupt:
        return TaskFailed("interrupted")
    if status:
        return TaskFailed(f"`doit {kind} {' '.join(shlex.quote(a) for a in argv)}` exited with status {status}")
    return None


# --------------------------------------------------------------------------- uptodate

def _safe(check: Callable[[], bool]) -> bool:
    """An uptodate check that cannot decide (bad input) says 'not up to date' so the action reports it."""
    try:
        return bool(check())
    except HermitBuildError as err:
        logger.debug("uptodate check failed: %s", err)
        return False


def uptodate_base_image(settings: Settings) -> bool:
    from . import container

    return _safe(lambda: container.base_image_exists(settings))


def uptodate_image(settings: Settings, image: str) -> bool:
    from . import container

    return _safe(lambda: container.image_exists(image, settings))


def uptodate_download(settings: Settings, name: str) -> bool:
    from . import fetch

    recipe = _recipes(settings)[name]
    if name in settings.overrides:
        return True
    return _safe(lambda: all(fetch.is_fetched(s, settings) for s in recipe.sources))


def uptodate_prepare(settings: Settings, name: str) -> bool:
    from . import plan

    recipes = _recipes(settings)
    return _safe(lambda: plan.is_prepared(recipes[name], recipes, settings))


def uptodate_build(settings: Settings, name: str) -> bool:
    from . import build

    return _safe(lambda: build.is_installed(name, _recipes(settings), settings))
