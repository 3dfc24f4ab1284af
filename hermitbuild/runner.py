"""The one place that runs external commands.

Contract:
- ``run(argv, ...)`` takes an argument list (never a shell string; ``shell=True``
  is never used).  Every element is converted with ``str``.
- It logs the command, the working directory and the environment *changes*
  (not the whole environment) at INFO on this module's logger.
- Output (stdout and stderr merged) is streamed line by line into ``log_path``
  when one is given (the file is opened in append mode, with a header line per
  command), optionally echoed to this process's stdout (``echo=True``) and
  optionally captured and returned (``capture=True``).
- On a non-zero exit (with ``check=True``), a timeout or Ctrl-C, it raises
  :class:`hermitbuild.errors.CommandError` carrying argv, cwd, return code, log
  path and the last ``tail_lines`` lines of output.  On Ctrl-C and timeout the
  whole process group is killed first, so no orphan keeps writing.
- ``feeding(argv, ...)`` is ``run`` for a command that reads a stream this process writes:
  a context manager yielding the child's stdin (a binary pipe); when the block ends the pipe
  is closed and the child waited for (``CommandError`` with its output's tail on a non-zero
  exit); when the block raises, the child's process group is killed and the error propagates.
  It logs the command at DEBUG (the restore runs one for every artifact).
- ``pipeline(first, second)`` runs ``first | second`` (copying a tree through two ``tar``
  processes); a failure names the command that failed, with its stderr's tail.
- ``output_bytes(argv)`` returns a command's stdout as bytes (stderr kept for the error's
  tail); it logs at DEBUG.
- ``spawn_detached(argv, log_path=...)`` starts a background process that outlives this one
  (the override watchers of :mod:`hermitbuild.treewatch`); it logs at DEBUG.
- ``passthrough=True`` is for interactive programs (a debugger): the child gets this
  terminal and its Ctrl-C; nothing is captured or logged but the command line.
- Nothing here reads settings or the environment on its own beyond inheriting
  ``os.environ`` for the child (plus the given changes).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

from .errors import CommandError

logger = logging.getLogger(__name__)

DEFAULT_TAIL = 40


@dataclass(frozen=True)
class Completed:
    """The result of a finished command."""

    argv: tuple[str, ...]
    returncode: int
    output: str  # captured output ("" unless capture=True)
    tail: str  # last lines of output, always kept
    seconds: float


def format_argv(argv: Sequence[str]) -> str:
    """A copy-pasteable rendering of an argument list (for logs and errors only)."""
    return " ".join(shlex.quote(a) for a in argv)


def tail_of(path: Path | str, lines: int = DEFAULT_TAIL) -> str:
    """The last ``lines`` lines of a (possibly large) text file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run(
    argv: Sequence[str | os.PathLike],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    replace_env: bool = False,
    log_path: Path | str | None = None,
    echo: bool = False,
    capture: bool = False,
    check: bool = True,
    timeout: float | None = None,
    stdin: bytes | None = None,
    tail_lines: int = DEFAULT_TAIL,
    fix: str = "",
    passthrough: bool = False,
) -> Completed:
    """Run ``argv``; see the module docstring for the contract."""
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("run() needs a non-empty argument list")
    changes = dict(env or {})
    child_env = dict(changes) if replace_env else {**os.environ, **changes}
    logger.info("$ %s", format_argv(args))
    if cwd is not None:
        logger.info("  cwd: %s", cwd)
    for key in sorted(changes):
        logger.info("  env: %s=%s", key, changes[key])
    if passthrough:
        return _run_passthrough(args, cwd, child_env, fix)

    log_fh: IO[str] | None = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_fh = open(log_path, "a", encoding="utf-8", errors="replace")
        log_fh.write(f"### {time.strftime('%Y-%m-%d %H:%M:%S')} $ {format_argv(args)}\n")
        if cwd is not None:
            log_fh.write(f"### cwd: {cwd}\n")
        for key in sorted(changes):
            log_fh.write(f"### env: {key}={changes[key]}\n")
        log_fh.flush()

    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    captured: list[str] = []
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            args, cwd=cwd, env=child_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        if log_fh:
            log_fh.close()
        raise CommandError(args, None, cwd=cwd, log_path=log_path,
                           why=f"program not found: {args[0]} ({exc.strerror})",
                           fix=fix or f"install {Path(args[0]).name} or put it on PATH") from None
    except OSError as exc:
        if log_fh:
            log_fh.close()
        raise CommandError(args, None, cwd=cwd, log_path=log_path,
                           why=f"could not start: {exc}", fix=fix or "check the path and permissions") from None

    if stdin is not None:
        def _feed() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        threading.Thread(target=_feed, daemon=True).start()

    timed_out = threading.Event()
    timer: threading.Timer | None = None
    if timeout is not None:
        def _expire() -> None:
            timed_out.set()
            _kill_group(proc)
        timer = threading.Timer(timeout, _expire)
        timer.daemon = True
        timer.start()

    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            tail.append(line.rstrip("\n"))
            if log_fh:
                log_fh.write(line)
                log_fh.flush()
            if capture:
                captured.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = proc.wait()
    except KeyboardInterrupt:
        _kill_group(proc)
        if log_fh:
            log_fh.write("### interrupted (Ctrl-C)\n")
            log_fh.close()
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if log_fh and not log_fh.closed:
            log_fh.write(f"### exit status {proc.returncode} after {time.monotonic() - start:.1f}s\n")
            log_fh.close()

    seconds = time.monotonic() - start
    tail_text = "\n".join(tail)
    if timed_out.is_set():
        raise CommandError(args, returncode, cwd=cwd, log_path=log_path, tail=tail_text,
                           why=f"timed out after {timeout:g}s and was killed",
                           fix=fix or "raise the timeout or find out why it hangs", timed_out=True)
    if check and returncode != 0:
        raise CommandError(args, returncode, cwd=cwd, log_path=log_path, tail=tail_text, fix=fix)
    return Completed(tuple(args), returncode, "".join(captured), tail_text, seconds)


def _run_passthrough(args: list[str], cwd: Path | str | None, env: Mapping[str, str], fix: str) -> Completed:
    """An interactive program on this terminal: stdin/stdout/stderr are the caller's, the child
    stays in the terminal's process group and Ctrl-C is its (a debugger interrupts its target;
    this process ignores it until the child is gone)."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=dict(env))
    except OSError as exc:
        raise CommandError(args, None, cwd=cwd, why=f"could not start: {exc.strerror or exc}",
                           fix=fix or f"install {Path(args[0]).name} or put it on PATH") from None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        returncode = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return Completed(tuple(args), returncode, "", "", time.monotonic() - start)


def output(argv: Sequence[str | os.PathLike], **kwargs) -> str:
    """Run and return the captured output, stripped (raises on failure)."""
    return run(argv, capture=True, **kwargs).output.strip()


def output_bytes(argv: Sequence[str | os.PathLike], *, cwd: Path | str | None = None, fix: str = "",
                 tail_lines: int = DEFAULT_TAIL) -> bytes:
    """Run and return stdout as bytes, unchanged (a listing of file names that may not be
    UTF-8); stderr is kept for the error.  Logs the command at DEBUG (a no-op build runs it)."""
    args = [os.fspath(a) for a in argv]
    logger.debug("$ %s", format_argv(args))
    try:
        proc = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True, check=False)
    except OSError as exc:
        raise CommandError(args, None, cwd=cwd, why=f"could not start: {exc.strerror or exc}",
                           fix=fix or f"install {Path(args[0]).name} or put it on PATH") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.decode("utf-8", "replace").splitlines()[-tail_lines:])
        raise CommandError(args, proc.returncode, cwd=cwd, tail=tail, fix=fix)
    return proc.stdout


def spawn_detached(argv: Sequence[str | os.PathLike], *, log_path: Path | str,
                   env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start a background process meant to outlive this one (its own session, stdin from
    /dev/null, stdout and stderr appended to ``log_path``); logged at DEBUG.  The caller
    talks to it by other means and never waits for it."""
    args = [os.fspath(a) for a in argv]
    logger.debug("$ %s &  (output: %s)", format_argv(args), log_path)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_fh:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                close_fds=True)


def pipeline(first: Sequence[str | os.PathLike], second: Sequence[str | os.PathLike], *,
             fix: str = "", tail_lines: int = DEFAULT_TAIL) -> None:
    """Run ``first | second`` (``second``'s stdout discarded); logged at INFO.  A failure of
    either is a ``CommandError`` for that command with its stderr's tail (the first one's
    failure wins, as the second then only saw a short stream, unless the first died of the
    broken pipe the second's failure left); Ctrl-C kills both."""
    a, b = [os.fspath(x) for x in first], [os.fspath(x) for x in second]
    logger.info("$ %s | %s", format_argv(a), format_argv(b))
    with tempfile.TemporaryFile() as err_a, tempfile.TemporaryFile() as err_b:
        procs: list[subprocess.Popen] = []
        try:
            try:
                procs.append(subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=err_a, start_new_session=True))
                assert procs[0].stdout is not None
                procs.append(subprocess.Popen(b, stdin=procs[0].stdout, stdout=subprocess.DEVNULL,
                                              stderr=err_b, start_new_session=True))
            except OSError as exc:
                argv = b if procs else a
                raise CommandError(argv, None, why=f"could not start: {exc.strerror or exc}",
                                   fix=fix or f"install {Path(argv[0]).name} or put it on PATH") from None
            finally:
                if procs and procs[0].stdout is not None:
                    procs[0].stdout.close()  # the second holds it now: the first sees it close
            codes = [p.wait() for p in procs]
        except BaseException:
            for p in procs:
                _kill_group(p)
            raise
        results = [(a, codes[0], err_a), (b, codes[1], err_b)]
        if codes[0] == -signal.SIGPIPE and codes[1] != 0:
            results.reverse()  # the second stopped reading first: its failure is the cause
        for argv, code, err in results:
            if code != 0:
                err.seek(0)
                lines = err.read().decode("utf-8", "replace").splitlines()[-tail_lines:]
                raise CommandError(argv, code, tail="\n".join(lines), fix=fix)


_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported by every Python


@contextlib.contextmanager
def feeding(argv: Sequence[str | os.PathLike], *, cwd: Path | str | None = None,
            tail_lines: int = DEFAULT_TAIL, fix: str = "", pipe_size: int = 1024 * 1024) -> Iterator[IO[bytes]]:
    """Run ``argv`` reading what the block writes into the yielded pipe; see the module docstring."""
    import fcntl

    args = [os.fspath(a) for a in argv]
    logger.debug("$ %s", format_argv(args))
    try:
        proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, bufsize=0)
    except OSError as exc:
        raise CommandError(args, None, cwd=cwd, why=f"could not start: {exc.strerror or exc}",
                           fix=fix or f"install {Path(args[0]).name} or put it on PATH") from None
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(OSError):  # fewer, larger writes; the default is 64 KiB
        fcntl.fcntl(proc.stdin.fileno(), _F_SETPIPE_SZ, pipe_size)
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    out = proc.stdout

    def _drain() -> None:
        for raw in iter(out.readline, b""):
            tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

    reader = threading.Thread(target=_drain, name="hermitbuild-feeding", daemon=True)
    reader.start()
    try:
        yield proc.stdin
        proc.stdin.close()
    except BrokenPipeError:  # the child stopped reading: it failed, and its output says why
        returncode = proc.wait()
        reader.join()
        raise CommandError(args, returncode, cwd=cwd, tail="\n".join(tail), fix=fix,
                           why=f"exit status {returncode} before it read all its input") from None
    except BaseException:
        _kill_group(proc)
        with contextlib.suppress(OSError):
            proc.stdin.close()
        reader.join(timeout=10)
        raise
    returncode = proc.wait()
    reader.join()
    if returncode != 0:
        raise CommandError(args, returncode, cwd=cwd, tail="\n".join(tail), fix=fix)
