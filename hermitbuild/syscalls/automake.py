"""Regenerating newlib's ``libc/sys/hermit/Makefile.in`` with automake 1.11.

Contract: :func:`host_automake` returns the callable ``automake(dir)`` that
:func:`~hermitbuild.syscalls.tree.generate_newlib` calls with the
``libc/sys/hermit`` directory after ``Makefile.am`` changed.  It runs, through
:mod:`hermitbuild.runner`, ``automake --cygnus Makefile`` in that directory (the
same command newlib's own regeneration rule uses) with automake 1.11 only:
the project's automake 1.11.6 (``<tools>/bin/automake``) when it is installed,
else the host's ``automake-1.11``; autoconf 2.64 is preferred the same way for
the traces automake takes.  Any other automake version is refused, because
newlib's Makefile.in files must come from 1.11.  The ``autom4te.cache``
directory automake leaves behind is removed again.  Inside the build container the
lead wires another callable with the same signature.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from ..errors import SyscallError
from ..runner import output, run
from ..settings import Settings


def _pick(settings: Settings | None, tool: str, host_name: str) -> str | None:
    if settings is not None:
        cand = settings.tools / "bin" / tool
        if cand.is_file():
            return str(cand)
    return shutil.which(host_name)


def find_automake(settings: Settings | None = None) -> tuple[str, dict[str, str]]:
    """(automake program, environment changes) for automake 1.11; SyscallError when none."""
    automake = _pick(settings, "automake", "automake-1.11")
    if automake is None:
        raise SyscallError("automake 1.11 is not available to regenerate libc/sys/hermit/Makefile.in",
                           "install it (Debian: `apt-get install automake1.11`) or build the project's "
                           "automake 1.11.6 with `doit toolchain`")
    version = output([automake, "--version"]).splitlines()[0] if automake else ""
    if " 1.11" not in version:
        raise SyscallError(f"{automake} is {version!r}, not automake 1.11",
                           "newlib's Makefile.in files need automake 1.11 (1.11.6); install automake1.11")
    env: dict[str, str] = {}
    autoconf = _pick(settings, "autoconf", "autoconf2.64")
    autom4te = _pick(settings, "autom4te", "autom4te2.64")
    if autoconf:
        env["AUTOCONF"] = autoconf
    if autom4te:
        env["AUTOM4TE"] = autom4te
    return automake, env


def host_automake(settings: Settings | None = None,
                  log_path: Path | None = None) -> Callable[[Path], None]:
    """The ``automake(dir)`` callable running automake 1.11 on this machine."""
    def automake(directory: Path) -> None:
        program, env = find_automake(settings)
        log = log_path or (settings.logs_dir / "syscalls" / "automake.log" if settings else None)
        cache = Path(directory) / "autom4te.cache"
        had_cache = cache.exists()
        try:
            run([program, "--cygnus", "Makefile"], cwd=directory, env=env, log_path=log,
                capture=log is None,
                fix="read the automake output; the Makefile.am region may be malformed, or the "
                    "tree's aclocal.m4/configure.in need a matching automake")
        finally:
            if not had_cache:  # leave the tree as clean as we found it
                shutil.rmtree(cache, ignore_errors=True)
    return automake
