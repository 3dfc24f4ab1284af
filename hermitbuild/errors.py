"""Every error hermitbuild raises.

Contract: one base class, :class:`HermitBuildError`.  Every error carries its
fields as attributes and renders as three parts: *what* failed, *why*, and the
*fix*.  Entry points (``dodo.py`` tasks, the CLI helpers) catch
``HermitBuildError`` and print ``str(err)`` without a traceback; anything else
escaping is a bug in hermitbuild.

Subclasses only fix the ``what`` wording and add fields; they never hide the
three parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


class HermitBuildError(Exception):
    """Base class: what failed, why, and how to fix it."""

    def __init__(self, what: str, why: str = "", fix: str = "", **fields: Any) -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.fields = dict(fields)
        for key, value in fields.items():
            setattr(self, key, value)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.why:
            lines.append(f"  why: {self.why}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.render()

    def __reduce__(self):  # keep errors picklable across doit -n processes
        return (_rebuild, (type(self), self.what, self.why, self.fix, self.fields))


def _rebuild(cls: type, what: str, why: str, fix: str, fields: dict) -> "HermitBuildError":
    err = cls.__new__(cls)
    HermitBuildError.__init__(err, what, why, fix, **fields)
    return err


def _where(file: Path | str | None, line: int | None = None, field: str | None = None) -> str:
    parts = []
    if file is not None:
        parts.append(f"{file}:{line}" if line else str(file))
    if field:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


class LocatedError(HermitBuildError):
    """An input file (or variable) is wrong at a known place: file, line, field.

    Subclasses set ``label`` (the *what* when a place is known) and ``unplaced`` (when not)."""

    label = "invalid input"
    unplaced = ""

    def __init__(self, why: str, fix: str, *, file: Path | str | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        where = _where(file, line, field)
        super().__init__(f"{self.label} ({where})" if where else (self.unplaced or self.label),
                         why, fix, file=file, line=line, field=field)


class ConfigError(LocatedError):
    """The settings file or an environment override is wrong."""

    label = "invalid settings"


class RecipeError(LocatedError):
    """A recipe file is malformed or inconsistent."""

    label = "invalid recipe"


class InputError(LocatedError):
    """A file hermitbuild reads cannot be read or decoded."""

    label = "cannot read input"


class FetchError(HermitBuildError):
    """A source could not be fetched."""


class ChecksumError(FetchError):
    """A downloaded file does not have the pinned sha256."""

    def __init__(self, path: Path | str, expected: str, actual: str, url: str = "") -> None:
        super().__init__(
            f"checksum mismatch for {Path(path).name}" + (f" from {url}" if url else ""),
            f"expected sha256 {expected}, got {actual}; the partial file was deleted",
            "check the mirror or URL serves the right file, or update the recipe's sha256 "
            "if the new file is trusted",
            path=str(path), expected=expected, actual=actual, url=url)


class OfflineError(FetchError):
    """Offline mode needs a file that is not there."""

    def __init__(self, needed: str, where: Path | str, source: str = "") -> None:
        super().__init__(
            f"offline mode: {needed} is not available locally",
            "offline mode never touches the network" + (f" (source {source})" if source else ""),
            f"put it at {where} (e.g. run `doit download` on a connected machine and copy "
            "build/downloads over), or turn offline mode off",
            needed=needed, where=str(where), source=source)


class UnpackError(HermitBuildError):
    """An archive is unsafe or unreadable."""


class PatchError(HermitBuildError):
    """A patch could not be applied (the tree was left pristine)."""

    def __init__(self, why: str, fix: str, *, patch: Path | str, target: str = "",
                 hunk: int | None = None, recipe: str = "") -> None:
        where = f"{patch}" + (f" -> {target}" if target else "") + (f" hunk #{hunk}" if hunk else "")
        super().__init__(f"patch failed: {where}" + (f" (recipe {recipe})" if recipe else ""),
                         why, fix, patch=str(patch), target=target, hunk=hunk, recipe=recipe)


class CommandError(HermitBuildError):
    """An external command failed (``timed_out``: it was killed at its timeout; ``tail``: its
    last lines of output)."""

    timed_out: bool
    tail: str

    def __init__(self, argv: Sequence[str], returncode: int | None, *, cwd: Path | str | None = None,
                 log_path: Path | str | None = None, tail: str = "", why: str = "",
                 fix: str = "", timed_out: bool = False) -> None:
        cmd = " ".join(str(a) for a in argv)
        if not why:
            why = (f"exit status {returncode}" if returncode is not None else "did not finish")
        if tail:
            why += f"\n  last lines of {log_path or 'output'}:\n" + "\n".join(
                "    | " + line for line in tail.rstrip("\n").splitlines())
        if not fix:
            fix = (f"read the full log {log_path}" if log_path else "read the output above") + \
                ", fix the cause, and re-run"
        super().__init__(f"command failed: {cmd}" + (f" (in {cwd})" if cwd else ""), why, fix,
                         argv=[str(a) for a in argv], returncode=returncode,
                         cwd=str(cwd) if cwd else None,
                         log_path=str(log_path) if log_path else None, tail=tail, timed_out=timed_out)


class ContainerError(HermitBuildError):
    """The container runtime is missing or an image could not be made."""


class PreflightError(HermitBuildError):
    """The machine cannot build yet: the pre-flight checks (``doit doctor``'s) failed."""

    def __init__(self, failed: Sequence[dict], report: str) -> None:
        super().__init__("this machine cannot build the toolchain yet (pre-flight checks failed)",
                         "\n" + "\n".join("    " + line for line in report.splitlines()),
                         "fix what the FAIL lines say, then re-run; `doit doctor` shows every check",
                         failed=list(failed), report=report)


class BuildError(HermitBuildError):
    """A build step failed."""

    def __init__(self, recipe: str, step: str, command: Sequence[str], log_path: Path | str,
                 tail: str, returncode: int | None = None, *, status: str = "",
                 fix: str = "") -> None:
        cmd = " ".join(str(a) for a in command)
        super().__init__(
            f"build failed: recipe '{recipe}', step '{step}'",
            f"command: {cmd}\n  exit status: {status or returncode}\n  log: {log_path}\n"
            "  last lines of the log:\n"
            + "\n".join("    | " + line for line in tail.rstrip("\n").splitlines()),
            fix or f"read {log_path}, fix the recipe, patch or source, then re-run; finished steps "
            "are not redone",
            recipe=recipe, step=step, command=[str(c) for c in command],
            log_path=str(log_path), tail=tail, returncode=returncode)


class CacheError(HermitBuildError):
    """The artifact cache could not be used."""


class ArtifactError(CacheError):
    """An artifact is corrupt, truncated or does not match its key."""


class SyscallError(LocatedError):
    """The syscall table or a generation request is wrong."""

    label = "invalid syscall table"
    unplaced = "syscall generation failed"


class RunError(HermitBuildError):
    """Booting or running a unikernel failed."""
