"""Tree editing: apply a table to prepared HermitCore and newlib source trees.

Contract:
- :func:`plan_kernel` / :func:`plan_newlib` compute, without writing anything, the
  exact new content of every file one generation touches (``None`` = delete).
  They work on a pristine tree and on an already generated one; an unchanged
  file is not in the plan, so regenerating is byte-identical and a no-op.
- Generated code lives in generated files (first comment holds
  :data:`~hermitbuild.syscalls.emit.GENERATED_MARK`) and in marked regions of
  hand-written files; everything outside them is kept byte for byte.  Generated
  files that the table no longer asks for are deleted, empty regions removed
  (with the blank line that was inserted before them), so removing every entry
  gives back the pristine files.
- Clashes are errors naming file and line: a ``sys_<name>`` the kernel tree
  already has outside generated code, a newlib ``<name>.c``/``<name>.h`` that
  was not generated, a name already in ``lib_a_SOURCES``, a standard header the
  newlib tree does not have, a ``__NR_`` number already used.
- One generation is all-or-nothing (:class:`hermitbuild.fsutil.Transaction`): every
  file is written atomically (temp + rename) and, if anything fails (including the
  automake run), every file touched is restored to its previous bytes.
- :func:`generate_kernel` / :func:`generate_newlib` are the public entry points
  (plan + transaction); they return the paths written or deleted.  When Makefile.am's
  source list changed, Makefile.in is edited the way automake 1.11 would
  (:mod:`.makefile_in`, byte-identical, no process started); ``automake`` is called
  with the libc/sys/hermit directory only when that edit is not sure (the table's
  last call removed, a Makefile.in not in automake's shape) or Makefile.in is stale;
  an ``autom4te.cache`` it leaves there is removed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import SyscallError
from ..fsutil import StatMemo, Transaction, read_text
from . import emit
from . import makefile_in as makefile_in_mod
from .regions import (find_region, kernel_root, newlib_root, read_tree_file as _read, set_region,
                      strip_region as _strip_region, tree_error)
from .automake import host_automake
from .model import Entry, Table

logger = logging.getLogger(__name__)

KERNEL_SCAN_DIRS = ("kernel", "libkern", "mm", "drivers", "arch", "include", "lwip/src")
_SYS_DEF_RE = re.compile(
    r"^[ \t]*(?:#[ \t]*define[ \t]+|(?P<pre>[A-Za-z_][\w \t*]*?)[\s*])sys_(?P<name>[A-Za-z0-9_]+)\s*\(")
_NOT_TYPES = {"return", "else", "if", "while", "case", "do", "goto", "sizeof", "for", "switch"}
_NR_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+__NR_(\w+)[ \t]+(\d+)")
_PROTO_RE = re.compile(r"^[A-Za-z_][\w \t*]*\bsys_\w+\s*\(.*\)\s*;\s*$")


@dataclass(frozen=True)
class Change:
    path: Path
    new: bytes | None  # None: delete the file


def _header_anchor(path: Path) -> Callable[[list[str]], int]:
    def anchor(lines: list[str]) -> int:
        nr = [i for i, ln in enumerate(lines) if _NR_RE.match(ln)]
        if nr:
            return nr[-1]
        protos = [i for i, ln in enumerate(lines) if _PROTO_RE.match(ln)]
        if protos:
            return protos[-1]
        raise tree_error("found neither `#define __NR_...` lines nor `sys_...(...);` prototypes to "
                         "place the generated prototypes after",
                         "add the marker lines by hand where they belong: "
                         f"`{emit.C_BEGIN}` and `{emit.C_END}`", path)
    return anchor


def _sources_assignment(lines: list[str], path: Path) -> tuple[int, int]:
    """(first, last) line index of the `lib_a_SOURCES =` assignment with continuations."""
    for i, ln in enumerate(lines):
        if re.match(r"^lib_a_SOURCES\s*=", ln):
            j = i
            while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
                j += 1
            return i, j
    raise tree_error("no `lib_a_SOURCES =` assignment", "this is not newlib's libc/sys/hermit/Makefile.am",
                     path)


def makefile_sources(text: str, path: Path, *, outside_region: bool = True) -> dict[str, int]:
    """Source files of ``lib_a_SOURCES`` (file -> line), outside the generated region by default."""
    lines = text.split("\n")
    found = find_region(lines, emit.AM_BEGIN_PREFIX, emit.AM_END, path)
    out: dict[str, int] = {}
    first, last = _sources_assignment(lines, path)
    idx = list(range(first, last + 1))
    if not outside_region and found:
        idx += list(range(found[0], found[1] + 1))
    for i in idx:
        body = lines[i].split("=", 1)[1] if "=" in lines[i] and "SOURCES" in lines[i] else lines[i]
        for word in body.replace("\\", " ").split():
            if word.endswith((".c", ".S", ".s")):
                out.setdefault(word, i + 1)
    return out


# ---------------------------------------------------------------------------- scanning


def is_generated_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(400)
    except OSError:
        return False
    return emit.GENERATED_MARK in head


def _sys_lines(path: Path) -> list[tuple[str, int]] | None:
    """The ``sys_<name>`` definitions/declarations (name, line) of one hand-written kernel
    file; None for a generated one."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if emit.GENERATED_MARK in text[:400]:
        return None
    if "sys_" not in text:
        return []
    return _sys_defs(list(enumerate(text.split("\n"), 1)))


def _sys_defs(numbered: list[tuple[int, str]]) -> list[tuple[str, int]]:
    out = []
    for lineno, line in numbered:
        m = _SYS_DEF_RE.match(line)
        if m:
            pre = (m.group("pre") or "").split()
            if not (pre and pre[0] in _NOT_TYPES):
                out.append((m.group("name"), lineno))
    return out


# a kernel tree is scanned up to three times by one `doit syscall add` (clash check, apply,
# drift check; 75 ms each on libhermit's 1,500 files): a file is read again only when it changed
_SCANNED: StatMemo[list[tuple[str, int]] | None] = StatMemo(_sys_lines)


def scan_kernel_syscalls(tree: Path) -> dict[str, str]:
    """``sys_<name>`` symbols defined/declared in the kernel tree outside generated code."""
    root = kernel_root(tree)
    found: dict[str, str] = {}
    generated = root / emit.KERNEL_FILE
    header = root / emit.KERNEL_HEADER
    for sub in KERNEL_SCAN_DIRS:
        base = root / sub
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fname in sorted(filenames):
                if not fname.endswith((".c", ".h")):
                    continue
                path = Path(dirpath) / fname
                if path == generated:
                    continue
                if path == header:  # its generated region is left out (and it is the one we edit)
                    text = path.read_text(encoding="utf-8", errors="replace")
                    defs = _sys_defs(_strip_region(text, emit.C_BEGIN_PREFIX, emit.C_END, path))
                else:
                    try:
                        defs = _SCANNED.get(path)
                    except OSError:
                        continue
                rel = path.relative_to(root).as_posix()
                for name, lineno in defs or ():
                    found.setdefault(name, f"{rel}:{lineno}")
    return found


def _nr_numbers(text: str, path: Path) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for lineno, line in _strip_region(text, emit.C_BEGIN_PREFIX, emit.C_END, path):
        m = _NR_RE.match(line)
        if m:
            out.setdefault(int(m.group(2)), (m.group(1), lineno))
    return out


def _check_numbers(table: Table, text: str, path: Path) -> None:
    used = _nr_numbers(text, path)
    names = {name for name, _ in used.values()}
    for entry in table.entries:
        if entry.number is None:
            continue
        if entry.number in used:
            name, line = used[entry.number]
            raise SyscallError(f"__NR_ number {entry.number} of {entry.name!r} is already __NR_{name} "
                               f"({path}:{line})", "choose an unused number",
                               file=str(table.path) if table.path else None, line=entry.line or None,
                               field="number")
        if entry.name in names:
            raise SyscallError(f"{path} already defines __NR_{entry.name}", "drop `number` from the entry",
                               file=str(table.path) if table.path else None, line=entry.line or None,
                               field="number")


# ---------------------------------------------------------------------------- plans


def _diff(path: Path, new: str | None) -> list[Change]:
    data = new.encode("utf-8") if new is not None else None
    if data is None:
        return [Change(path, None)] if path.exists() else []
    try:
        if path.read_bytes() == data:
            return []
    except FileNotFoundError:
        pass
    return [Change(path, data)]


def _table_where(table: Table, entry: Entry, field: str = "name") -> dict:
    return {"file": str(table.path) if table.path else None, "line": entry.line or None, "field": field}


def plan_kernel(tree: Path, table: Table) -> list[Change]:
    """Changes that bring the kernel tree in line with ``table`` (see module docstring)."""
    root = kernel_root(tree)
    existing = scan_kernel_syscalls(root)
    for entry in table.entries:
        if entry.name in existing:
            raise SyscallError(f"the kernel already has sys_{entry.name} ({existing[entry.name]})",
                               f"choose another name, or change sys_{entry.name} with a patch under "
                               "patches/ instead of the table", **_table_where(table, entry))
    header = root / emit.KERNEL_HEADER
    text = _read(header)
    _check_numbers(table, text, header)
    changes: list[Change] = []
    # trees generated before the prototypes moved to their own header carry them in a region of
    # syscall.h: it is removed (a no-op on pristine and on current trees)
    new_text = set_region(text, None, header, begin=emit.C_BEGIN_PREFIX, end=emit.C_END,
                          anchor=lambda lines: 0, blank_before=True)
    changes += _diff(header, new_text)
    for rel, content in ((emit.KERNEL_GEN_HEADER, emit.kernel_header), (emit.KERNEL_FILE, emit.kernel_file)):
        gen = root / rel
        if gen.exists() and not is_generated_file(gen):
            raise tree_error("this file exists and was not generated by hermitbuild",
                             f"rename that file; hermitbuild owns {rel}", gen)
        changes += _diff(gen, content(table.entries) if table.entries else None)
    return changes


@dataclass(frozen=True)
class NewlibPlan:
    changes: list[Change]
    hermit_dir: Path
    makefile_changed: bool
    #: lib_a_SOURCES of the Makefile.am before the change, its hand-written part, and the
    #: generated wrappers after it (for :func:`makefile_in.update`)
    previous_sources: tuple[str, ...] = ()
    hand_sources: tuple[str, ...] = ()
    generated_sources: tuple[str, ...] = ()


def _find_std_header(nroot: Path, header: str) -> bool:
    return any((nroot / base / header).is_file()
               for base in ("libc/include", "libc/sys/hermit/include", "libc/sys/hermit",
                            "libc/machine/x86_64"))


def plan_newlib(tree: Path, table: Table) -> NewlibPlan:
    """Changes that bring the newlib tree in line with ``table`` (see module docstring)."""
    nroot = newlib_root(tree)
    hermit = nroot / emit.NEWLIB_DIR
    include = nroot / emit.NEWLIB_INCLUDE
    am_path = nroot / emit.NEWLIB_MAKEFILE_AM
    am_text = _read(am_path)
    hand_sources = makefile_sources(am_text, am_path)
    changes: list[Change] = []
    wanted_c: set[Path] = set()
    wanted_h: set[Path] = set()
    for entry in table.entries:
        cfile = hermit / f"{entry.name}.c"
        if f"{entry.name}.c" in hand_sources:
            raise SyscallError(f"newlib already builds {entry.name}.c ({am_path}:{hand_sources[entry.name + '.c']})",
                               f"choose another name, or change {emit.NEWLIB_DIR}/{entry.name}.c with a patch "
                               "under patches/ instead of the table", **_table_where(table, entry))
        if cfile.exists() and not is_generated_file(cfile):
            raise SyscallError(f"newlib already has {cfile} (not generated by hermitbuild)",
                               "choose another name or remove that file with a patch",
                               **_table_where(table, entry))
        wanted_c.add(cfile)
        changes += _diff(cfile, emit.newlib_wrapper(entry))
        if entry.new_header:
            hfile = include / f"{entry.name}.h"
            if hfile.exists() and not is_generated_file(hfile):
                raise SyscallError(f"newlib already has the header {hfile}",
                                   f"use `header: {entry.name}.h` (the existing header) instead of `new`, "
                                   "or choose another name", **_table_where(table, entry, "header"))
            wanted_h.add(hfile)
            changes += _diff(hfile, emit.new_header(entry))
        else:
            for h in entry.header:
                if not _find_std_header(nroot, h):
                    raise SyscallError(f"header {h!r} of {entry.name!r} is not in the newlib tree "
                                       f"({nroot}/libc/include)",
                                       "name the standard header that declares the call, or `new`",
                                       **_table_where(table, entry, "header"))
    # orphans: generated files the table no longer lists
    for path in sorted(hermit.glob("*.c")) + sorted(include.glob("*.h")):
        if path not in wanted_c and path not in wanted_h and is_generated_file(path):
            changes.append(Change(path, None))
    hdr = nroot / emit.NEWLIB_HEADER
    hdr_text = _read(hdr)
    _check_numbers(table, hdr_text, hdr)
    region = emit.newlib_header_region(table.entries) if table.entries else None
    changes += _diff(hdr, set_region(hdr_text, region, hdr, begin=emit.C_BEGIN_PREFIX, end=emit.C_END,
                                     anchor=_header_anchor(hdr), blank_before=True))
    am_region = emit.makefile_region(table.entries) if table.entries else None
    new_am = set_region(am_text, am_region, am_path, begin=emit.AM_BEGIN_PREFIX, end=emit.AM_END,
                        anchor=lambda lines: _sources_assignment(lines, am_path)[1], blank_before=False)
    am_changes = _diff(am_path, new_am)
    changes += am_changes
    return NewlibPlan(changes=changes, hermit_dir=hermit, makefile_changed=bool(am_changes),
                      previous_sources=tuple(makefile_sources(am_text, am_path, outside_region=False)),
                      hand_sources=tuple(hand_sources),
                      generated_sources=tuple(f"{e.name}.c" for e in table.entries))


def apply_kernel(tx: Transaction, tree: Path, table: Table) -> list[Path]:
    changes = plan_kernel(tree, table)
    for change in changes:
        tx.apply(change.path, change.new)
    return [c.path for c in changes]


def apply_newlib(tx: Transaction, tree: Path, table: Table,
                 automake: Callable[[Path], None] | None) -> list[Path]:
    plan = plan_newlib(tree, table)
    for change in plan.changes:
        tx.apply(change.path, change.new)
    written = [c.path for c in plan.changes]
    makefile_in = plan.hermit_dir / "Makefile.in"
    edited = _edited_makefile_in(plan, makefile_in) if plan.makefile_changed else None
    if edited is not None:
        tx.apply(makefile_in, edited.encode("utf-8"))
        written.append(makefile_in)
    elif plan.makefile_changed or makefile_in_stale(plan.hermit_dir):
        runner = automake or host_automake()
        tx.snapshot(makefile_in)
        cache = plan.hermit_dir / "autom4te.cache"
        had_cache = cache.exists()
        try:
            runner(plan.hermit_dir)
        finally:
            if not had_cache:  # whichever automake ran, leave no cache behind
                shutil.rmtree(cache, ignore_errors=True)
        if makefile_in in tx.changed_snapshots():
            written.append(makefile_in)
    return written


def _edited_makefile_in(plan: NewlibPlan, makefile_in: Path) -> str | None:
    """Makefile.in edited for the new source list as automake would (None: run automake)."""
    if not plan.generated_sources:
        logger.debug("syscalls: the table's last call removed; automake writes lib_a_SOURCES back")
        return None
    try:
        text = makefile_in.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    edited = makefile_in_mod.update(text, plan.previous_sources, plan.hand_sources,
                                    plan.generated_sources)
    if edited is None:
        logger.info("syscalls: %s is not in the shape automake 1.11 left it; running automake", makefile_in)
    return edited


def generate_kernel(tree: Path, table: Table) -> list[Path]:
    """Bring the kernel tree in line with ``table``; returns the paths written or deleted."""
    with Transaction() as tx:
        paths = apply_kernel(tx, Path(tree), table)
    for p in paths:
        logger.info("syscalls: updated %s", p)
    return paths


def generate_newlib(tree: Path, table: Table,
                    automake: Callable[[Path], None] | None = None) -> list[Path]:
    """Bring the newlib tree in line with ``table`` and regenerate Makefile.in when
    Makefile.am changed (``automake(libc/sys/hermit dir)``; None: host automake-1.11)."""
    with Transaction() as tx:
        paths = apply_newlib(tx, Path(tree), table, automake)
    for p in paths:
        logger.info("syscalls: updated %s", p)
    return paths


# ---------------------------------------------------------------------------- state


def makefile_in_objects(path: Path) -> set[str]:
    """Source base names whose objects the (cygnus-style) Makefile.in builds."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return set()
    return set(re.findall(r"lib_a-([A-Za-z0-9_]+)\.\$\(OBJEXT\)", text))


def generated_in_kernel(tree: Path) -> set[str]:
    gen = kernel_root(tree) / emit.KERNEL_FILE
    if not gen.exists():
        return set()
    return set(re.findall(r"^[A-Za-z_][\w \t*]*?[\s*]sys_(\w+)\(", read_text(gen, SyscallError), re.M))


def generated_in_newlib(tree: Path) -> set[str]:
    hermit = newlib_root(tree) / emit.NEWLIB_DIR
    return {p.stem for p in hermit.glob("*.c") if is_generated_file(p)}


def drift(kernel: Path | None, newlib: Path | None, table: Table) -> list[str]:
    """Human-readable reasons the trees differ from the table (empty: in sync)."""
    reasons: list[str] = []
    if kernel is not None:
        for change in plan_kernel(kernel, table):
            reasons.append(f"{change.path}: " + ("should not exist" if change.new is None
                                                 else "differs from the table"))
    if newlib is not None:
        plan = plan_newlib(newlib, table)
        for change in plan.changes:
            reasons.append(f"{change.path}: " + ("should not exist" if change.new is None
                                                 else "differs from the table"))
        if not plan.makefile_changed:
            stale = makefile_in_stale(plan.hermit_dir)
            if stale:
                reasons.append(f"{plan.hermit_dir / 'Makefile.in'}: stale (regenerate with automake 1.11); "
                               + stale)
    return reasons


def makefile_in_stale(hermit_dir: Path) -> str:
    """Why Makefile.in does not build what Makefile.am lists ("" when it does or cannot tell)."""
    am_path = hermit_dir / "Makefile.am"
    sources = {Path(s).stem for s in makefile_sources(_read(am_path), am_path, outside_region=False)}
    objects = makefile_in_objects(hermit_dir / "Makefile.in")
    if not objects or objects == sources:
        return ""
    missing, extra = sorted(sources - objects), sorted(objects - sources)
    return "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                       f"extra {', '.join(extra)}" if extra else "") if part)

