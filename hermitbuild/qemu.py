"""Compile C applications with the installed HermitCore toolchain and boot them.

Contract:

- :class:`RunOptions` (frozen) holds how to boot: hypervisor (``isle``:
  ``"qemu"`` or ``"uhyve"``), memory, CPUs, verbose kernel log, the
  application's arguments, a timeout in seconds and KVM (``None``: detect).
  Bad values raise :class:`~hermitbuild.errors.RunError` at construction.
- :func:`kvm_usable` says whether ``/dev/kvm`` can be opened read-write and
  answers the KVM API-version ioctl.
- :func:`proxy_env` turns options into HermitCore's ``HERMIT_*`` variables, as
  the HermitCore guide uses them: ``HERMIT_ISLE=qemu`` with ``HERMIT_KVM=1``
  when KVM is usable and ``0`` otherwise; ``uhyve`` only with KVM (else
  ``RunError`` with the fix).  ``HERMIT_VERBOSE=1`` is always set so the proxy
  dumps the kernel log when the application ends; it is shown on the terminal
  only with ``verbose``, but it always lands in the run's log file.
- :func:`compile_app` compiles one ``.c`` file or every ``.c`` file of a
  directory with ``{prefix}/bin/{target}-gcc``; the output is written
  atomically (temporary name, then rename).
- :func:`run_app` runs ``{prefix}/bin/proxy <binary> <args>`` through
  :func:`hermitbuild.runner.run`; the application's output streams to this
  process's stdout, the return value is the application's exit status (the
  proxy exits with it).  All output (including the kernel log) is written to
  ``log_dir/<app>.log``; the file is kept when the run failed (non-zero status
  or timeout) and removed after a success unless ``keep_log``.  A run longer
  than the timeout is killed (the proxy then stops qemu and dumps the log) and
  raises ``RunError`` naming the timeout and the saved log.
- ``exec_prefix`` (e.g. ``["podman", "run", ..., image]``) runs the compiler or
  the proxy somewhere else, typically in the build container the toolchain was
  built in; paths must be the same there (the project mounts at the same
  absolute paths).  The ``HERMIT_*`` variables are then passed on the command
  line through ``env`` so they reach the inner process.
- :func:`smoke` compiles and boots the bundled examples (``examples/<name>/``:
  C or C++ sources (``*.c``; ``*.cc``/``*.cpp``/``*.cxx`` compile with ``{target}-g++``),
  ``expected.txt``, optionally ``flags.txt`` (extra compiler flags) and ``cpus.txt``
  (vCPUs)) and compares the output: every
  non-empty line of ``expected.txt`` must appear, in order, as a line of the
  output, and the exit status must be 0.  An example listing system calls in
  ``requires-syscalls.txt`` runs only when the caller says those calls are in
  the syscall table (otherwise it is reported as skipped, with the reason).
  It never raises for a failing example; the :class:`SmokeResult` says what
  passed and is recorded in the artifact's manifest (:meth:`SmokeResult.to_manifest`).
- :func:`run_main` and :func:`smoke_main` are the CLI entry points (they print).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import io
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence, TextIO

from .fsutil import read_text
from .errors import CommandError, HermitBuildError, RunError
from .runner import run
from .settings import Settings

logger = logging.getLogger(__name__)

ISLES = ("qemu", "uhyve")
DEFAULT_TIMEOUT = 300.0
KERNEL_LOG_MARKER = "Dump kernel log:"
QEMU_CMD_MARKER = "qemu startup command:"
EXPECTED_FILE = "expected.txt"
REQUIRES_FILE = "requires-syscalls.txt"
FLAGS_FILE = "flags.txt"  # an example's extra compiler flags (one shell-like line)
CPUS_FILE = "cpus.txt"  # an example's vCPU count
C_SUFFIXES = (".c",)
CXX_SUFFIXES = (".cc", ".cpp", ".cxx")
SOURCE_SUFFIXES = C_SUFFIXES + CXX_SUFFIXES
_MEM_RE = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12


@dataclass(frozen=True)
class RunOptions:
    """How to boot an application (see the module docstring)."""

    isle: str = "qemu"
    mem: str = "1G"
    cpus: int = 1
    verbose: bool = False
    extra_args: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    kvm: bool | None = None  # None: use KVM when /dev/kvm is usable
    keep_log: bool = False

    def __post_init__(self) -> None:
        if self.isle not in ISLES:
            raise RunError(f"unknown hypervisor {self.isle!r}",
                           f"HermitCore's proxy knows {', '.join(ISLES)}",
                           "use --isle qemu (default) or --isle uhyve", field="isle")
        if not isinstance(self.mem, str) or not _MEM_RE.match(self.mem.upper()):
            raise RunError(f"invalid memory size {self.mem!r}",
                           "HERMIT_MEM takes a number with an optional K, M, G or T suffix",
                           "use e.g. --mem 1G or --mem 512M", field="mem")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise RunError(f"invalid CPU count {self.cpus!r}", "HERMIT_CPUS must be 1 or more",
                           "use e.g. --cpus 1", field="cpus")
        if not self.timeout or self.timeout <= 0:
            raise RunError(f"invalid timeout {self.timeout!r}", "the timeout must be positive seconds",
                           "use e.g. --timeout 300", field="timeout")
        object.__setattr__(self, "mem", self.mem.upper())
        object.__setattr__(self, "extra_args", tuple(str(a) for a in self.extra_args))


def kvm_usable(dev: Path = Path("/dev/kvm")) -> bool:
    """True when ``dev`` opens read-write and answers KVM_GET_API_VERSION with 12."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _KVM_GET_API_VERSION) == _KVM_API_VERSION
    except OSError:
        return False
    finally:
        os.close(fd)


def resolve_kvm(opts: RunOptions, dev: Path = Path("/dev/kvm")) -> bool:
    """The KVM decision for ``opts``: the explicit choice, else :func:`kvm_usable`."""
    if opts.kvm is None:
        return kvm_usable(dev)
    if opts.kvm and not kvm_usable(dev):
        raise RunError("KVM was asked for but is not usable",
                       f"{dev} is missing or cannot be opened read-write",
                       "load the kvm module and give this user access to /dev/kvm (group kvm), "
                       "pass --device /dev/kvm to the container, or run without --kvm")
    return opts.kvm


def proxy_env(opts: RunOptions, kvm: bool) -> dict[str, str]:
    """The ``HERMIT_*`` variables for the proxy (see the module docstring)."""
    if opts.isle == "uhyve" and not kvm:
        raise RunError("uhyve needs KVM, which is not usable here",
                       "uhyve is a KVM-based hypervisor; /dev/kvm is missing, not accessible, "
                       "or KVM was turned off",
                       "run with --isle qemu (emulation works without KVM), or make /dev/kvm "
                       "usable (kvm module loaded, user in group kvm, --device /dev/kvm in a "
                       "container)")
    return {
        "HERMIT_ISLE": opts.isle,
        "HERMIT_KVM": "1" if kvm else "0",
        "HERMIT_MEM": opts.mem,
        "HERMIT_CPUS": str(opts.cpus),
        "HERMIT_VERBOSE": "1",
    }


def toolchain_paths(settings: Settings) -> tuple[Path, Path]:
    """(compiler, proxy) of the installed toolchain."""
    bindir = settings.prefix / "bin"
    return bindir / f"{settings.target}-gcc", bindir / "proxy"


def is_source(app: Path) -> bool:
    """Whether ``app`` is application source to compile (a C or C++ file, or a directory)."""
    return app.is_dir() or app.suffix in SOURCE_SUFFIXES


def _sources_of(sources: Path) -> list[Path]:
    if sources.is_file():
        if sources.suffix not in SOURCE_SUFFIXES:
            raise RunError(f"{sources} is not a C or C++ source file",
                           "the application must be a .c (or .cc/.cpp/.cxx) file or a directory of them",
                           "pass a source file or a directory holding the application's sources")
        return [sources]
    if sources.is_dir():
        files = sorted(p for p in sources.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES)
        if not files:
            raise RunError(f"no C or C++ sources in {sources}", "the directory holds no *.c, *.cc, *.cpp "
                           "or *.cxx file", "pass a source file or a directory holding the application's "
                           "sources")
        return files
    raise RunError(f"application source {sources} does not exist", "no such file or directory",
                   "check the path (relative paths are relative to the current directory)")


def example_flags(example: Path) -> list[str]:
    """An example's extra compiler flags (``flags.txt``, shell-like words; # comments)."""
    path = example / FLAGS_FILE
    if not path.is_file():
        return []
    text = " ".join(line.split("#", 1)[0] for line in read_text(path, RunError).splitlines())
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise RunError(f"cannot read the compiler flags in {path}", str(exc),
                       "write the flags on one line, quotes closed, e.g. `-pthread -O2`",
                       path=str(path)) from None


def example_cpus(example: Path) -> int | None:
    """An example's vCPU count (``cpus.txt``: one number), or None."""
    path = example / CPUS_FILE
    if not path.is_file():
        return None
    words = read_text(path, RunError).split("#", 1)[0].split()
    if len(words) != 1 or not words[0].isdigit() or int(words[0]) < 1:
        raise RunError(f"{path} does not hold a CPU count", f"it reads {' '.join(words)!r}",
                       "write one whole number of at least 1, e.g. 2", path=str(path))
    return int(words[0])


def _require_program(path: Path, what: str, exec_prefix: Sequence[str]) -> None:
    if exec_prefix:  # it lives somewhere else (a container); the inner run reports it
        return
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RunError(f"{what} {path} is not installed",
                       "the HermitCore toolchain is not in the prefix (or the prefix setting is "
                       "different from where it was installed)",
                       "build and install it with `doit toolchain` (or set `prefix` in "
                       "hermitbuild.yaml / HERMITBUILD_PREFIX to where it is)", path=str(path))


def compile_app(sources: Path, out: Path, settings: Settings, *,
                exec_prefix: Sequence[str] = (), cflags: Sequence[str] = ("-O2",),
                log_path: Path | None = None) -> Path:
    """Compile ``sources`` (a ``.c`` file or a directory of them) into ``out``."""
    sources = Path(sources).absolute()
    out = Path(out).absolute()
    files = _sources_of(sources)
    gcc, _ = toolchain_paths(settings)
    if any(f.suffix in CXX_SUFFIXES for f in files):  # C++: the g++ driver links libstdc++
        gcc = gcc.with_name(f"{settings.target}-g++")
    _require_program(gcc, "the HermitCore compiler", exec_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    include = [f"-I{sources if sources.is_dir() else sources.parent}"]
    argv = [*exec_prefix, str(gcc), *cflags, *include, *(str(f) for f in files), "-o", str(tmp)]
    try:
        run(argv, log_path=log_path, capture=True)
    except CommandError as err:
        tmp.unlink(missing_ok=True)
        raise RunError(f"compiling {sources.name} failed", err.why,
                       "fix the compiler errors shown above"
                       + (f" (full log {log_path})" if log_path else "")
                       + "; if a HermitCore header or syscall is missing, check the toolchain "
                       "(`doit syscall list`)", sources=str(sources)) from None
    if not tmp.exists():
        raise RunError(f"compiling {sources.name} produced no binary", f"{gcc} wrote no {tmp}",
                       "check the compiler (is exec_prefix mounting the output directory?)")
    os.replace(tmp, out)
    return out


class _TerminalFilter(io.TextIOBase):
    """Echo target for the proxy's output: hides what only belongs in the log.

    Without ``verbose`` the proxy's "qemu startup command" line and the kernel
    log it dumps at the end are not shown (they are in the log file).
    """

    def __init__(self, target: TextIO, verbose: bool) -> None:
        super().__init__()
        self.target = target
        self.verbose = verbose
        self.in_kernel_log = False

    def write(self, text: str) -> int:  # runner writes whole lines
        if not self.verbose:
            if text.startswith(KERNEL_LOG_MARKER) or text.startswith("\n" + KERNEL_LOG_MARKER):
                self.in_kernel_log = True
            if self.in_kernel_log or text.startswith(QEMU_CMD_MARKER):
                return len(text)
        self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _proxy_argv(binary: Path, opts: RunOptions, settings: Settings, env: Mapping[str, str],
                exec_prefix: Sequence[str]) -> list[str]:
    _, proxy = toolchain_paths(settings)
    if exec_prefix:
        return [*exec_prefix, "env", *(f"{k}={v}" for k, v in env.items()), str(proxy),
                str(binary), *opts.extra_args]
    return [str(proxy), str(binary), *opts.extra_args]


def _boot(binary: Path, opts: RunOptions, settings: Settings, *, exec_prefix: Sequence[str],
          log_dir: Path, echo: bool, kvm_dev: Path) -> tuple[int, str, Path]:
    """Run the proxy; (exit status, captured output, log path). Keeps the log on failure."""
    binary = Path(binary).absolute()
    _, proxy = toolchain_paths(settings)
    _require_program(proxy, "HermitCore's proxy", exec_prefix)
    if not exec_prefix and not binary.is_file():
        raise RunError(f"unikernel {binary} does not exist", "nothing to boot",
                       "compile it first (`doit boot` compiles .c sources for you)")
    env = proxy_env(opts, resolve_kvm(opts, kvm_dev))
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{binary.name}.log"
    log_path.unlink(missing_ok=True)
    argv = _proxy_argv(binary, opts, settings, env, exec_prefix)
    terminal = _TerminalFilter(sys.stdout, opts.verbose)
    try:
        with contextlib.redirect_stdout(terminal):
            done = run(argv, env=None if exec_prefix else env, log_path=log_path, echo=echo,
                       capture=True, check=False, timeout=opts.timeout)
    except CommandError as err:
        if err.timed_out:
            raise RunError(f"{binary.name} ran longer than {opts.timeout:g} s and was stopped",
                           "the unikernel did not exit in time (a hang, a crash that left qemu "
                           f"running, or a slow boot without KVM); kernel log saved at {log_path}",
                           f"read {log_path}; raise the limit with --timeout if it is just slow; with KVM on, "
                           "try --no-kvm (or `kvm: off`): guests were seen hanging under nested KVM",
                           log_path=str(log_path), timeout=opts.timeout) from None
        raise RunError(f"could not start HermitCore's proxy for {binary.name}", err.why,
                       err.fix, log_path=str(log_path)) from None
    status = _exit_status(done.returncode)
    if status != 0:
        logger.warning("%s exited with status %d; kernel log saved at %s", binary.name, status,
                       log_path)
    elif not opts.keep_log:
        log_path.unlink(missing_ok=True)
    return status, done.output, log_path


def run_app(binary: Path, opts: RunOptions, settings: Settings, *, exec_prefix: Sequence[str] = (),
            log_dir: Path, kvm_dev: Path = Path("/dev/kvm")) -> int:
    """Boot ``binary`` through the proxy; returns the application's exit status."""
    status, _, _ = _boot(binary, opts, settings, exec_prefix=exec_prefix, log_dir=log_dir,
                         echo=True, kvm_dev=kvm_dev)
    return status


# ---- smoke test ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExampleResult:
    """What happened to one example."""

    name: str
    compiled: bool = False
    booted: bool = False
    matched: bool = False
    status: int | None = None
    skipped: str = ""
    missing: tuple[str, ...] = ()
    error: str = ""
    log: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.skipped) or (self.compiled and self.booted and self.matched
                                      and self.status == 0)

    def describe(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped ({self.skipped})"
        if self.passed:
            return f"{self.name}: ok"
        if not self.compiled:
            return f"{self.name}: FAILED to compile: {self.error}"
        if not self.booted:
            return f"{self.name}: FAILED to boot: {self.error}"
        parts = []
        if self.status != 0:
            parts.append(f"exit status {self.status}")
        if self.missing:
            parts.append("missing output: " + "; ".join(repr(m) for m in self.missing))
        return f"{self.name}: FAILED ({', '.join(parts)})" + (f"; log {self.log}" if self.log else "")


@dataclass(frozen=True)
class SmokeResult:
    """The smoke test of one toolchain."""

    examples: tuple[ExampleResult, ...] = ()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        ran = [e for e in self.examples if not e.skipped]
        return bool(ran) and all(e.passed for e in self.examples)

    def summary(self) -> str:
        head = "smoke test passed" if self.passed else "smoke test FAILED"
        return "\n".join([head, *("  " + e.describe() for e in self.examples)])

    def to_manifest(self) -> dict[str, Any]:
        """A JSON-able record for the artifact's manifest."""
        return {
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "examples": {e.name: {"passed": e.passed, "skipped": e.skipped, "status": e.status,
                                  "missing": list(e.missing), "error": e.error}
                         for e in self.examples},
        }


def expected_lines(path: Path) -> list[str]:
    """The non-empty lines of an expected-output file."""
    return [line.rstrip() for line in read_text(path, RunError).splitlines() if line.strip()]


def missing_lines(output: str, expected: Sequence[str]) -> list[str]:
    """Expected lines not found, in order, among the output's lines (trailing blanks and CRs ignored)."""
    lines = [line.rstrip() for line in output.splitlines()]
    missing: list[str] = []
    pos = 0
    for want in expected:
        for i in range(pos, len(lines)):
            if lines[i] == want:
                pos = i + 1
                break
        else:
            missing.append(want)
    return missing


def required_syscalls(example: Path) -> list[str]:
    """System calls an example needs in the table (``requires-syscalls.txt``, one per line)."""
    path = example / REQUIRES_FILE
    if not path.exists():
        return []
    return [w for line in read_text(path, RunError).splitlines()
            for w in [line.split("#", 1)[0].strip()] if w]


def list_examples(examples_dir: Path) -> list[Path]:
    """Example directories: those holding an expected-output file, sorted by name."""
    if not examples_dir.is_dir():
        raise RunError(f"examples directory {examples_dir} does not exist",
                       "the smoke test boots the bundled examples",
                       "run from a full checkout of the repository (examples/ is part of it)")
    return sorted(p for p in examples_dir.iterdir() if (p / EXPECTED_FILE).is_file())


def smoke(settings: Settings, *, exec_prefix: Sequence[str] = (), examples_dir: Path,
          syscalls_ready: bool = False, opts: RunOptions | None = None,
          work_dir: Path | None = None, log_dir: Path | None = None,
          only: Collection[str] = (), kvm_dev: Path = Path("/dev/kvm"),
          available_syscalls: Collection[str] | None = None) -> SmokeResult:
    """Compile and boot the examples and check their output (see the module docstring).

    ``syscalls_ready``: the syscall table has the calls the syscall examples need
    (``required_syscalls``), so those examples are run too.  Alternatively
    ``available_syscalls`` (e.g. ``load_table(...).names()``) decides per example:
    it runs when every call it needs is in there.
    """
    opts = opts or RunOptions(timeout=120, kvm=kvm_setting(settings))
    work_dir = Path(work_dir or settings.work_dir / "smoke")
    log_dir = Path(log_dir or settings.logs_dir / "smoke")
    start = time.monotonic()
    results: list[ExampleResult] = []
    for example in list_examples(Path(examples_dir)):
        name = example.name
        if only and name not in only:
            continue
        needs = required_syscalls(example)
        if available_syscalls is not None:
            lacking = [n for n in needs if n not in set(available_syscalls)]
        else:
            lacking = [] if syscalls_ready else needs
        if lacking:
            results.append(ExampleResult(
                name, skipped=f"needs system calls {', '.join(lacking)}; add them with "
                              f"`doit syscall add` and rebuild the toolchain"))
            continue
        binary = work_dir / name
        try:
            compile_app(example, binary, settings, exec_prefix=exec_prefix,
                        cflags=("-O2", *example_flags(example)), log_path=log_dir / f"{name}.compile.log")
            cpus = example_cpus(example)
        except HermitBuildError as err:
            results.append(ExampleResult(name, error=err.what + (f": {err.why}" if err.why else "")))
            continue
        keep = dataclasses.replace(opts, keep_log=True, cpus=cpus or opts.cpus)
        try:
            status, output, log = _boot(binary, keep, settings, exec_prefix=exec_prefix,
                                        log_dir=log_dir, echo=False, kvm_dev=kvm_dev)
        except HermitBuildError as err:
            results.append(ExampleResult(name, compiled=True, error=err.what,
                                         log=str(getattr(err, "log_path", "") or "")))
            continue
        missing = tuple(missing_lines(output, expected_lines(example / EXPECTED_FILE)))
        result = ExampleResult(name, compiled=True, booted=True, matched=not missing,
                               status=status, missing=missing, log=str(log))
        if result.passed and not opts.keep_log:
            log.unlink(missing_ok=True)
            result = dataclasses.replace(result, log="")
        results.append(result)
    return SmokeResult(tuple(results), time.monotonic() - start)


# ---- CLI -----------------------------------------------------------------------------------------

def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Compile a C application with the HermitCore "
                                "toolchain and boot it through HermitCore's proxy.")
    p.add_argument("app", help="a .c file, a directory of .c files, or an already built unikernel")
    p.add_argument("args", nargs="*", help="arguments for the application (after --)")
    p.add_argument("--isle", choices=ISLES, default="qemu", help="hypervisor (default qemu)")
    p.add_argument("--mem", default="1G", help="memory, e.g. 1G or 512M (default 1G)")
    p.add_argument("--cpus", type=int, default=1, help="number of CPUs (default 1)")
    kvm = p.add_mutually_exclusive_group()
    kvm.add_argument("--kvm", dest="kvm", action="store_true", default=None,
                     help="require KVM (default: use it when /dev/kvm is usable)")
    kvm.add_argument("--no-kvm", dest="kvm", action="store_false", help="emulate, even with KVM")
    p.add_argument("--verbose", "-v", action="store_true", help="show the kernel log")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"stop the unikernel after this many seconds (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--keep-log", action="store_true", help="keep the log even when the run succeeded")
    return p


def kvm_setting(settings: Settings) -> bool | None:
    """The ``kvm`` setting as a RunOptions.kvm value: None (auto), True or False."""
    return {"on": True, "off": False}.get(settings.kvm)


def run_main(argv: Sequence[str], settings: Settings, *, exec_prefix: Sequence[str] = ()) -> int:
    """``doit boot <app> [options] [-- app args]``: compile if needed, boot, return the app's status."""
    argv = list(argv)
    app_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, app_args = argv[:cut], argv[cut + 1:]
    ns = _parser("doit boot").parse_args(argv)
    opts = RunOptions(isle=ns.isle, mem=ns.mem, cpus=ns.cpus, verbose=ns.verbose,
                      extra_args=tuple(ns.args) + tuple(app_args), timeout=ns.timeout,
                      kvm=ns.kvm if ns.kvm is not None else kvm_setting(settings),
                      keep_log=ns.keep_log)
    app = Path(ns.app).absolute()
    log_dir = settings.logs_dir / "run"
    if is_source(app):
        name = app.stem if app.is_file() else app.name
        binary = compile_app(app, settings.work_dir / "run" / name, settings,
                             exec_prefix=exec_prefix, log_path=log_dir / f"{name}.compile.log")
    elif app.is_file():
        binary = app
    else:
        raise RunError(f"application {app} does not exist", "no such file or directory",
                       "pass a .c or .cpp file, a directory of sources or a built unikernel")
    status = run_app(binary, opts, settings, exec_prefix=exec_prefix, log_dir=log_dir)
    if status != 0:
        print(f"{binary.name} exited with status {status}; log saved at {log_dir / (binary.name + '.log')}",
              file=sys.stderr)
    return status


def smoke_main(settings: Settings, *, syscalls_ready: bool = False,
               available_syscalls: Collection[str] | None = None, exec_prefix: Sequence[str] = (),
               examples_dir: Path | None = None) -> SmokeResult:
    """``doit smoke``: run :func:`smoke` on the repository's examples and print the summary."""
    result = smoke(settings, exec_prefix=exec_prefix,
                   examples_dir=examples_dir or settings.root / "examples",
                   syscalls_ready=syscalls_ready, available_syscalls=available_syscalls)
    print(result.summary())
    return result
