"""Where generated code goes in a source tree: the HermitCore and newlib roots inside a
prepared tree, reading its files, and the marked regions of hand-written files.

Contract:
- :func:`kernel_root` / :func:`newlib_root` find the libhermit / newlib source root inside a
  tree (the tree itself or a subdirectory) or raise a located error saying what was expected.
- :func:`find_region` finds the one ``begin`` ... ``end`` marker pair of a file's lines (None
  when there is none); broken markers (missing, doubled, out of order) are an error naming the
  file and line.  :func:`set_region` replaces, inserts or removes that region, leaving every
  other line byte for byte; :func:`strip_region` numbers the lines outside it.
- Every error here is a :class:`~hermitbuild.errors.SyscallError` made by :func:`tree_error`:
  the file and line in the message and as fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import SyscallError
from ..fsutil import read_text
from . import emit


def tree_error(why: str, fix: str, path: Path | str, line: int | None = None) -> SyscallError:
    """A problem in a source tree (not in the table): "syscall generation failed", with
    the file and line in the message and as attributes."""
    where = f"{path}:{line}" if line else str(path)
    err = SyscallError(f"{where}: {why}", fix)
    err.file, err.line = str(path), line
    err.fields.update(file=str(path), line=line)
    return err


def kernel_root(tree: Path) -> Path:
    """The libhermit source root inside ``tree`` (the tree itself or tree/libhermit)."""
    for cand in (tree, tree / "libhermit"):
        if (cand / emit.KERNEL_HEADER).is_file() and (cand / "kernel").is_dir():
            return cand
    raise tree_error("this does not look like a HermitCore (libhermit) tree",
                     f"expected {emit.KERNEL_HEADER} and kernel/ in it; prepare the tree first "
                     "(`doit toolchain`) or pass the right directory", tree)


def newlib_root(tree: Path) -> Path:
    """The newlib/ directory (holding libc/) inside ``tree`` (repository root or newlib/)."""
    for cand in (tree / "newlib", tree):
        if (cand / emit.NEWLIB_DIR).is_dir():
            return cand
    raise tree_error("this does not look like a newlib tree",
                     f"expected newlib/{emit.NEWLIB_DIR} in it; prepare the tree first "
                     "(`doit toolchain`) or pass the right directory", tree)


def read_tree_file(path: Path) -> str:
    if not path.exists():
        raise tree_error("file is missing", "prepare the tree again (`doit toolchain`)", path)
    return read_text(path, SyscallError, fix="prepare the tree again (`doit toolchain`)")


def find_region(lines: list[str], begin: str, end: str, path: Path) -> tuple[int, int] | None:
    """(first, last) line index of the marked region, or None; errors on broken markers."""
    starts = [i for i, ln in enumerate(lines) if ln.strip().startswith(begin)]
    ends = [i for i, ln in enumerate(lines) if ln.strip().startswith(end)]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        line = (starts or ends)[0] + 1
        raise tree_error("the generated-region markers are broken (missing, doubled or out of order)",
                         f"restore one `{begin}` ... `{end}` pair, or delete both marker lines "
                         "and everything between them, then regenerate", path, line)
    return starts[0], ends[0]


def set_region(text: str, region: str | None, path: Path, *, begin: str, end: str,
               anchor: Callable[[list[str]], int], blank_before: bool) -> str:
    """Replace, insert (after line index ``anchor(lines)``) or remove the region."""
    lines = text.split("\n")
    found = find_region(lines, begin, end, path)
    new_lines = region.split("\n") if region is not None else []
    if found:
        first, last = found
        if region is None:
            if blank_before and first > 0 and lines[first - 1] == "":
                first -= 1
            return "\n".join(lines[:first] + lines[last + 1:])
        return "\n".join(lines[:first] + new_lines + lines[last + 1:])
    if region is None:
        return text
    at = anchor(lines)
    insert = ([""] if blank_before else []) + new_lines
    return "\n".join(lines[:at + 1] + insert + lines[at + 1:])


def strip_region(text: str, begin: str, end: str, path: Path) -> list[tuple[int, str]]:
    """Numbered lines (1-based) outside the marked region."""
    lines = text.split("\n")
    found = find_region(lines, begin, end, path)
    return [(i + 1, ln) for i, ln in enumerate(lines)
            if not found or not found[0] <= i <= found[1]]
