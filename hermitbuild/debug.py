"""``doit debug``: boot an application paused under qemu's gdb stub and attach gdb with its symbols.

Contract:
- :func:`gdb_argv` is gdb's command line for an ELF with symbols: ``-nx -q``, then
  ``set architecture i386:x86-64`` *before* ``target remote 127.0.0.1:<port>`` (gdb
  attaches while the CPU is still at its reset vector, then runs HermitCore's 32-bit
  loader: a 32-bit view makes gdb 13 with qemu 7.2 fail with "Remote 'g' packet reply is
  too long", the error the guide patched gdb 8.0 for), ``hbreak SYMBOL`` for each
  ``--break`` (hardware breakpoints: HermitCore's loader copies the application into place
  after gdb attached, which would overwrite a software breakpoint), ``continue`` when a
  breakpoint was set, then the ``--gdb-command`` list (``bt`` by default with ``--batch``),
  and with ``--batch`` a final ``kill`` (gdb's batch mode then exits).
- :func:`session` runs the boot command in the background and gdb in the foreground in one
  ``sh`` process (inside the toolchain container when ``prefix`` is given, so gdb reaches
  the stub on that container's own loopback: the port never leaves it); when gdb exits the
  boot is stopped (``SIGTERM``: HermitCore's proxy then stops its qemu) and gdb's status is
  returned.  ``timeout`` (batch) kills the whole process group.  Interactive sessions pass
  the terminal through (Ctrl-C reaches gdb, which interrupts the target).
- :func:`debug_main` is ``doit debug APP.c|DIR|ELF [--break SYMBOL]... [--gdb-command CMD]...
  [--batch] [--gdb PATH] [--timeout S] [--mem M] [--cpus N] [-- ARGS]``: compiles ``.c``
  sources with ``-g -O0``, boots through ``proxy`` with ``HERMIT_DEBUG=1`` (qemu's gdb
  stub on 127.0.0.1:1234, the CPU frozen at its first instruction: ``patches/hermit/0005``)
  and TCG unless KVM is asked for, and prints gdb's output; the exit status is gdb's.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import Sequence

from .errors import CommandError, RunError
from .qemu import RunOptions, compile_app, is_source, kvm_setting, proxy_env, resolve_kvm, toolchain_paths
from .runner import Completed, run
from .settings import Settings

GDB_PORT = 1234
DEFAULT_TIMEOUT = 300.0


def gdb_argv(gdb: str, elf: Path, *, breaks: Sequence[str] = (), commands: Sequence[str] = (),
             batch: bool = False, port: int = GDB_PORT, connect_timeout: int = 60) -> list[str]:
    """gdb's command line (see the module docstring)."""
    script = ["set pagination off", "set confirm off", "set architecture i386:x86-64",
              f"set tcp connect-timeout {connect_timeout}", f"target remote 127.0.0.1:{port}"]
    script += [f"hbreak {symbol}" for symbol in breaks]
    if breaks:
        script.append("continue")
    script += list(commands) or (["bt"] if batch else [])
    if batch:
        script.append("kill")
    argv = [gdb, "-nx", "-q"] + (["-batch"] if batch else [])
    for line in script:
        argv += ["-ex", line]
    return argv + [str(elf)]


def _script(boot: Sequence[str], gdb: Sequence[str], boot_log: Path) -> str:
    return "\n".join([
        f"{shlex.join(boot)} > {shlex.quote(str(boot_log))} 2>&1 < /dev/null &",
        "boot=$!",
        shlex.join(gdb),
        "status=$?",
        "kill -TERM $boot 2>/dev/null",
        "wait $boot 2>/dev/null",
        "exit $status",
    ])


def session(boot: Sequence[str], gdb: Sequence[str], *, boot_log: Path, prefix: Sequence[str] = (),
            timeout: float | None = DEFAULT_TIMEOUT, interactive: bool = False,
            log_path: Path | None = None) -> Completed:
    """Boot in the background, gdb in the foreground; see the module docstring."""
    boot_log.parent.mkdir(parents=True, exist_ok=True)
    argv = [*prefix, "sh", "-c", _script(boot, gdb, boot_log)]
    try:
        return run(argv, check=False, capture=not interactive, passthrough=interactive,
                   timeout=None if interactive else timeout, log_path=None if interactive else log_path)
    except CommandError as err:
        if err.timed_out:
            raise RunError(f"the debugging session ran longer than {timeout:g} s and was stopped",
                           "gdb did not finish (a breakpoint never reached, or a target that does not "
                           f"stop); the boot's output is in {boot_log}",
                           "check the --break symbol and the --gdb-command list; raise --timeout if "
                           "the guest is just slow (TCG)", log_path=str(boot_log)) from None
        raise RunError("could not start the debugging session", err.why, err.fix) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doit debug", description="Boot a HermitCore application paused "
                                "under qemu's gdb stub and attach gdb with its symbols.")
    p.add_argument("app", help="a .c file, a directory of .c files, or a unikernel built with -g")
    p.add_argument("args", nargs="*", help="arguments for the application (after --)")
    p.add_argument("--break", dest="breaks", action="append", default=[], metavar="SYMBOL",
                   help="stop there (a hardware breakpoint); repeatable")
    p.add_argument("--gdb-command", dest="commands", action="append", default=[], metavar="CMD",
                   help="a gdb command to run (after the breakpoint is reached); repeatable")
    p.add_argument("--batch", action="store_true", help="run the commands, print gdb's output, exit")
    p.add_argument("--gdb", default="gdb", help="the gdb to use (default: gdb of the toolchain image)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"stop a --batch session after this many seconds (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--mem", default="1G", help="memory, e.g. 1G (default 1G)")
    p.add_argument("--cpus", type=int, default=1, help="number of CPUs (default 1)")
    p.add_argument("--kvm", action="store_true", help="use KVM (default: TCG, which every host has)")
    return p


def debug_main(argv: Sequence[str], settings: Settings, *, exec_prefix: Sequence[str] = (),
               interactive_prefix: Sequence[str] = ()) -> int:
    """``doit debug ...`` (see the module docstring); returns gdb's exit status."""
    argv = list(argv)
    app_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, app_args = argv[:cut], argv[cut + 1:]
    ns = _parser().parse_args(argv)
    app = Path(ns.app).absolute()
    log_dir = settings.logs_dir / "debug"
    if is_source(app):
        name = app.stem if app.is_file() else app.name
        elf = compile_app(app, settings.work_dir / "debug" / name, settings, exec_prefix=exec_prefix,
                          cflags=("-g", "-O0"), log_path=log_dir / f"{name}.compile.log")
    elif app.is_file():
        elf = app
    else:
        raise RunError(f"application {app} does not exist", "no such file or directory",
                       "pass a .c file, a directory of .c files or a unikernel built with -g")
    opts = RunOptions(mem=ns.mem, cpus=ns.cpus, extra_args=tuple(ns.args) + tuple(app_args),
                      kvm=ns.kvm or kvm_setting(settings) is True)
    env = {**proxy_env(opts, resolve_kvm(opts)), "HERMIT_DEBUG": "1"}
    _, proxy = toolchain_paths(settings)
    if not exec_prefix and shutil.which(ns.gdb) is None and not Path(ns.gdb).is_file():
        raise RunError(f"no gdb found ({ns.gdb})", "doit debug attaches gdb to qemu's gdb stub",
                       "install gdb (`sudo apt-get install gdb`) or pass --gdb PATH")
    boot = ["env", *(f"{k}={v}" for k, v in env.items()), str(proxy), str(elf), *opts.extra_args]
    interactive = not ns.batch
    gdb = gdb_argv(ns.gdb, elf, breaks=ns.breaks, commands=ns.commands, batch=ns.batch)
    prefix = interactive_prefix if interactive and exec_prefix else exec_prefix
    done = session(boot, gdb, boot_log=log_dir / f"{elf.name}.boot.log", prefix=prefix,
                   timeout=ns.timeout, interactive=interactive, log_path=log_dir / f"{elf.name}.gdb.log")
    if ns.batch:
        sys.stdout.write(done.output)
        sys.stdout.flush()
    return done.returncode
