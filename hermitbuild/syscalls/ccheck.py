"""Checks that a syscall's C body can compile, before anything is written.

Contract (the cheap bracket check every table load runs is :mod:`.cbody`):
- :func:`syntax_errors` compiles the generated kernel function of each entry with
  ``cc -fsyntax-only`` (the host compiler, when one is found on PATH; otherwise it returns
  no errors), behind a prelude that declares the table's types (typedefs as integers,
  structs forward-declared).  Only *syntax* errors count: the host has no HermitCore
  headers, so an undeclared kernel function or variable is expected and ignored.  It
  returns ``(entry name, compiler message)`` pairs; the command line runs it in
  ``doit syscall add`` and ``check`` (never in a task creator).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from .. import runner
from ..errors import CommandError
from . import emit
from .model import STRUCTS, TYPEDEFS, Entry

_SYNTAX = re.compile(r"error: (expected|stray|missing terminating|unterminated|empty character|"
                     r"invalid preprocessing|#endif|#else|#elif|unbalanced|extra tokens)")


def _prelude() -> str:
    lines = ["/* prelude of hermitbuild's syntax check: the table's types, nothing else */"]
    lines += [f"typedef long {name};" for name in sorted(TYPEDEFS)]
    lines += [f"struct {name};" for name in sorted(STRUCTS)]
    return "\n".join(lines) + "\n"


def find_cc() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def syntax_errors(entries: Iterable[Entry], cc: str | None = None) -> list[tuple[str, str]]:
    """(name, message) for each entry whose generated kernel function has a syntax error."""
    cc = cc or find_cc()
    bodies = [e for e in entries if e.body is not None]
    if cc is None or not bodies:
        return []
    problems: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hermitbuild-ccheck-") as tmp:
        for entry in bodies:
            src = Path(tmp) / f"sys_{entry.name}.c"
            src.write_text(_prelude() + emit.kernel_function(entry), encoding="utf-8")
            try:
                done = runner.run([cc, "-fsyntax-only", "-std=gnu99", "-w", str(src)], capture=True,
                                  check=False, timeout=60)
            except CommandError:
                continue  # a compiler that cannot run decides nothing
            errors = [ln[ln.index("error: ") + 7:] for ln in done.output.splitlines() if _SYNTAX.search(ln)]
            if done.returncode != 0 and errors:
                problems.append((entry.name, "; ".join(dict.fromkeys(errors))[:400]))
    return problems
