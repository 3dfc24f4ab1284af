"""The doit task generators: wiring only, no logic of its own.

Contract:
- :func:`doit_config` returns ``DOIT_CONFIG`` (dep_file under the build dir,
  sqlite3 backend, default task ``toolchain``).
- ``task_*`` functions are re-exported by ``dodo.py``.  Task creators run on
  every ``doit list``: they only read settings, recipes and file names.  No
  network, git or container calls happen here; those live in the actions and
  in ``uptodate`` callables.
- Every action is :func:`hermitbuild.cli.action` (or ``action_args``) given the
  module-level function to run and picklable arguments (so ``doit -n N`` works); it
  returns ``TaskFailed`` with the rendered :class:`~hermitbuild.errors.HermitBuildError`
  instead of a traceback.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from . import cli
from .errors import ConfigError
from .fsutil import ensure_writable_dir
from .recipe import RecipeSet
from .settings import Settings

Task = dict[str, Any]


def doit_config(settings: Settings) -> dict[str, Any]:
    """``DOIT_CONFIG``; a build directory that cannot be created or written is a ConfigError."""
    ensure_writable_dir(settings.build_dir, "build_dir", ConfigError)
    return {
        "dep_file": str(settings.dep_file),
        "backend": "sqlite3",
        "default_tasks": ["toolchain"],
        "verbosity": 2,
        "action_string_formatting": "new",
    }


def _ctx() -> tuple[Settings, RecipeSet]:
    return cli.context()


def _toolchain_builds(settings: Settings, recipes: RecipeSet) -> list[str]:
    """The ``build:*`` tasks of the toolchain (what ``doit toolchain`` and the boot tasks depend on)."""
    return [f"build:{name}" for name in cli.toolchain_recipes(settings, recipes)]


def _command_task(fn: Callable[[Settings, list[str]], int], name: str,
                  needs_toolchain: bool = False, options: tuple[tuple[str, str], ...] = ()) -> Task:
    """A task that takes the command line's arguments (``doit NAME ARGS...``) and always runs;
    with ``needs_toolchain``, doit first brings every toolchain recipe up to date (the
    ``build:*`` tasks: what changed is rebuilt or restored, nothing else).  ``options``:
    ``(name, help)`` of ``--name VALUE`` options that may come first (doit parses options
    before the first positional argument itself; they reach ``fn`` as ``--name VALUE``)."""
    settings, recipes = _ctx()
    task: Task = {
        "actions": [(cli.action_args, (fn, name, settings))],
        "pos_arg": "args",
        "uptodate": [False],
        "verbosity": 2,
    }
    if options:
        task["params"] = [{"name": opt, "long": opt, "default": "", "type": str, "help": text}
                          for opt, text in options]
    if needs_toolchain:
        task["task_dep"] = _toolchain_builds(settings, recipes)
    return task


def task_base_image() -> Task:
    """Create the base image locally with debootstrap + import (no registry needed)."""
    settings, _ = _ctx()
    return {
        "actions": [(cli.action, (cli.do_base_image, settings))],
        "uptodate": [(cli.uptodate_base_image, (settings,))],
        "verbosity": 2,
    }


def task_containers() -> Iterator[Task]:
    """Build the build images (tag = hash of Containerfile and inputs)."""
    settings, recipes = _ctx()
    images = sorted({r.image for r in recipes})
    yield {"basename": "containers", "name": None, "doc": "build every build image"}
    for image in images:
        yield {
            "name": image,
            "doc": f"build image containers/Containerfile.{image}",
            "actions": [(cli.action, (cli.do_container_image, settings, image))],
            "uptodate": [(cli.uptodate_image, (settings, image))],
            "verbosity": 2,
        }


def task_download() -> Iterator[Task]:
    """Download every source (tarballs, git mirrors) for offline use."""
    settings, recipes = _ctx()
    yield {"basename": "download", "name": None, "doc": "download all sources (for air-gapped use)"}
    for rec in recipes:
        if not rec.sources:
            continue
        yield {
            "name": rec.name,
            "doc": f"download the sources of {rec.name}",
            "actions": [(cli.action, (cli.do_download, settings, rec.name))],
            "uptodate": [(cli.uptodate_download, (settings, rec.name))],
            "verbosity": 2,
        }


def task_prepare() -> Iterator[Task]:
    """Prepare source trees: checkout/unpack, patch series, generated syscall code."""
    settings, recipes = _ctx()
    yield {"basename": "prepare", "name": None, "doc": "prepare every source tree"}
    for rec in recipes:
        if rec.tree_from:
            continue
        yield {
            "name": rec.name,
            "doc": f"prepare build/src/{rec.name} (fetch, unpack, patch, generate)",
            "actions": [(cli.action, (cli.do_prepare, settings, rec.name))],
            "uptodate": [(cli.uptodate_prepare, (settings, rec.name))],
            "verbosity": 2,
        }


def task_build() -> Iterator[Task]:
    """Build (or restore from the artifact cache) one recipe and install it."""
    settings, recipes = _ctx()
    yield {"basename": "build", "name": None, "doc": "build every recipe (toolchain, plus any in skip)"}
    for rec in recipes:
        yield {
            "name": rec.name,
            "doc": f"build and install {rec.name} {rec.version}" + (f" ({rec.variant})" if rec.variant else ""),
            "actions": [(cli.action, (cli.do_build, settings, rec.name))],
            "uptodate": [(cli.uptodate_build, (settings, rec.name))],
            "task_dep": [f"build:{d}" for d in rec.depends],
            "verbosity": 2,
        }


def task_toolchain() -> Task:
    """Build and install the whole HermitCore toolchain into the prefix (but the `skip` setting's recipes)."""
    settings, recipes = _ctx()
    return {
        "actions": [(cli.action, (cli.do_summary, settings))],
        "task_dep": _toolchain_builds(settings, recipes),
        "verbosity": 2,
    }


def task_syscall() -> Task:
    """Syscall table: `doit syscall add NAME [SIGNATURE] [--body C]`, remove, list, check, export."""
    return _command_task(cli.cmd_syscall, "syscall")


def task_doctor() -> Task:
    """Check this machine: runtime (a real container run), images, directories, disk, KVM, remote, settings."""
    return _command_task(cli.cmd_doctor, "doctor")


def task_cache() -> Task:
    """Artifact cache: `doit cache stats|list|prune|push|verify`."""
    return _command_task(cli.cmd_cache, "cache")


def task_boot() -> Task:
    """Compile a C app with the toolchain and boot it: `doit boot APP.c|DIR [--mem 1G] [--cpus N] ...`.

    The toolchain is brought up to date first (after `doit syscall add`, the kernel and newlib
    are rebuilt incrementally).  (`doit run` is doit's own command, so booting is `doit boot`.)
    """
    return _command_task(cli.cmd_boot, "boot", needs_toolchain=True)


def task_smoke() -> Task:
    """Build and boot the bundled examples and check their output (the toolchain brought up to date first)."""
    settings, recipes = _ctx()
    return {
        "actions": [(cli.action, (cli.do_smoke, settings))],
        "task_dep": _toolchain_builds(settings, recipes),
        "uptodate": [False],
        "verbosity": 2,
    }


def task_debug() -> Task:
    """Boot an app paused under qemu's gdb stub and attach gdb: `doit debug APP [--break main] [--batch]`."""
    return _command_task(cli.cmd_debug, "debug", needs_toolchain=True)


def task_sbom() -> Task:
    """Write the SPDX 2.3 SBOM of the installed toolchain: `doit sbom [--output FILE]`."""
    return _command_task(cli.cmd_sbom, "sbom",
                         options=(("output", "where to write the SBOM (default build/sbom.spdx.json)"),))


def task_toolchain_image() -> Task:
    """The installed toolchain as an OCI image, a layer per recipe: `doit toolchain_image [--push oci://R/REPO]`."""
    return _command_task(cli.cmd_toolchain_image, "toolchain_image",
                         options=(("push", "push to this registry repository: oci://HOST/REPO"),))


def task_image() -> Task:
    """Make a bootable GRUB ISO (ldhermit.elf + app) and an xl config: `doit image APP [--boot-check]`."""
    return _command_task(cli.cmd_image, "image")
