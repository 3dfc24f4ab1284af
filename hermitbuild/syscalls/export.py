"""Export the generated changes as git-format patches, ready to send upstream.

Contract: :func:`export_patches` computes, for each prepared tree given, the
files the table generates twice: once for an empty table (what the pinned,
pristine commit has) and once for the table, then lets git (through
:mod:`hermitbuild.runner`, in a throw-away repository) write one
``git format-patch`` file per tree: ``<out>/libhermit/0001-*.patch`` with paths
relative to the libhermit root and ``<out>/newlib/0001-*.patch`` with paths
relative to the newlib repository root (``newlib/libc/...``), so they apply with
``git am`` on hermitcore/libhermit @ b27b19458cce and olivierpierre/newlib @
02d2b8799abd.  Author and dates are fixed, so the same table gives the same
bytes.  With an ``automake`` callable, ``libc/sys/hermit/Makefile.in`` is in the
newlib patch too: it is regenerated for both states in a scratch skeleton next to
the tree (the top-level aux files, ``newlib/acinclude.m4``, and the directory's
``configure.in``, ``aclocal.m4`` and ``Makefile.am``), so the patch applies to the
pristine file and gives what the build uses (automake 1.11.6 with autoconf 2.64
reproduces newlib's pristine ``Makefile.in`` byte for byte).  Without one, it is left
out and the commit message says how to regenerate it.  Nothing in the trees is
changed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import SyscallError
from ..runner import output
from ..fsutil import write_atomic
from . import emit
from .catalog import PINNED_HERMIT, PINNED_NEWLIB
from .model import Table
from .tree import Change, kernel_root, newlib_root, plan_kernel, plan_newlib

AUTHOR = "hermitbuild <hermitbuild@localhost>"
DATE = "2000-01-01T00:00:00+0000"


def _state(changes: list[Change], paths: set[Path]) -> dict[Path, bytes | None]:
    by_path = {c.path: c.new for c in changes}
    out: dict[Path, bytes | None] = {}
    for p in paths:
        if p in by_path:
            out[p] = by_path[p]
        else:
            out[p] = p.read_bytes() if p.exists() else None
    return out


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "hermitbuild", "GIT_AUTHOR_EMAIL": "hermitbuild@localhost",
           "GIT_COMMITTER_NAME": "hermitbuild", "GIT_COMMITTER_EMAIL": "hermitbuild@localhost",
           "GIT_AUTHOR_DATE": DATE, "GIT_COMMITTER_DATE": DATE, "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(repo)}
    return output(["git", "-C", str(repo), *args], env=env)


def _write_state(repo: Path, root: Path, state: dict[Path, bytes | None]) -> None:
    for path, data in state.items():
        target = repo / path.relative_to(root)
        if data is None:
            if target.exists():
                target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _one_patch(root: Path, base: dict[Path, bytes | None], new: dict[Path, bytes | None],
               subject: str, body: str, out: Path) -> Path | None:
    if base == new:
        return None
    with tempfile.TemporaryDirectory(prefix="hermitbuild-export-") as tmp:
        repo = Path(tmp)
        _git(repo, "init", "-q")
        _write_state(repo, root, base)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", "base")
        _write_state(repo, root, new)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", subject + "\n\n" + body)
        text = _git(repo, "format-patch", "-1", "--stdout", "--no-signature", "HEAD") + "\n"
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", subject).strip("-.")[:52].rstrip("-.")
    name = f"0001-{slug}.patch"  # like git format-patch names it
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.patch"):
        old.unlink()
    target = out / name
    write_atomic(target, text)
    return target


def _makefile_in(nroot: Path, am_text: bytes, automake: Callable[[Path], None]) -> bytes:
    """``Makefile.in`` that automake makes from ``am_text`` in a scratch skeleton of the tree."""
    repo = nroot.parent
    needed = [nroot / "acinclude.m4", nroot / emit.NEWLIB_DIR / "configure.in",
              nroot / emit.NEWLIB_DIR / "aclocal.m4"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SyscallError(f"cannot regenerate Makefile.in for the export: {', '.join(missing)} missing",
                           "export from a complete newlib tree (`doit prepare:newlib`)")
    with tempfile.TemporaryDirectory(prefix=".hermitbuild-export-", dir=repo.parent) as tmp:
        skeleton = Path(tmp)
        for item in repo.iterdir():  # AC_CONFIG_AUX_DIR(../../../..): install-sh, missing, ...
            if item.is_file() and not item.is_symlink():
                shutil.copy2(item, skeleton / item.name)
        (skeleton / "newlib").mkdir()
        shutil.copy2(nroot / "acinclude.m4", skeleton / "newlib" / "acinclude.m4")
        hermit = skeleton / "newlib" / emit.NEWLIB_DIR
        hermit.mkdir(parents=True)
        for name in ("configure.in", "aclocal.m4"):
            shutil.copy2(nroot / emit.NEWLIB_DIR / name, hermit / name)
        (hermit / "Makefile.am").write_bytes(am_text)
        automake(hermit)
        return (hermit / "Makefile.in").read_bytes()


def export_patches(kernel: Path | None, newlib: Path | None, table: Table, out: Path,
                   automake: Callable[[Path], None] | None = None) -> list[Path]:
    """Write the patches (see the module docstring); returns the files written."""
    names = ", ".join(table.names())
    written: list[Path] = []
    empty = Table(path=table.path, entries=())
    if kernel is not None:
        root = kernel_root(kernel)
        full, none = plan_kernel(kernel, table), plan_kernel(kernel, empty)
        paths = {c.path for c in full} | {c.path for c in none}
        patch = _one_patch(
            root, _state(none, paths), _state(full, paths),
            f"Add system calls {names}" if table.entries else "Remove generated system calls",
            f"Kernel side of: {names}.\n\nGenerated by hermitbuild from syscalls/table.yaml; "
            f"based on hermitcore/libhermit {PINNED_HERMIT}.\nThe definitions are in "
            f"{emit.KERNEL_FILE} (kernel/*.c is globbed by CMakeLists.txt), the prototypes "
            f"in {emit.KERNEL_GEN_HEADER}.\n", out / "libhermit")
        if patch:
            written.append(patch)
    if newlib is not None:
        newlib_root(newlib)  # fails early with a clear error when this is no newlib tree
        repo_root = Path(newlib)
        full_plan, none_plan = plan_newlib(newlib, table), plan_newlib(newlib, empty)
        full, none = full_plan.changes, none_plan.changes
        paths = {c.path for c in full} | {c.path for c in none}
        base, new = _state(none, paths), _state(full, paths)
        nroot = newlib_root(newlib)
        am_path = nroot / emit.NEWLIB_MAKEFILE_AM
        if automake is not None and base.get(am_path) is not None and new.get(am_path) is not None:
            in_path = am_path.with_name("Makefile.in")
            base[in_path] = _makefile_in(nroot, base[am_path], automake)
            new[in_path] = _makefile_in(nroot, new[am_path], automake)
            how = "Makefile.in was regenerated with automake 1.11.6 (autoconf 2.64).\n"
        else:
            how = ("After applying, regenerate newlib/libc/sys/hermit/Makefile.in with automake "
                   "1.11.6:\n  cd newlib/libc/sys/hermit && automake --cygnus Makefile\n")
        patch = _one_patch(
            repo_root, base, new,
            f"hermit: add system calls {names}" if table.entries else "hermit: remove generated system calls",
            f"C library side of: {names}.\n\nGenerated by hermitbuild from syscalls/table.yaml; "
            f"based on olivierpierre/newlib {PINNED_NEWLIB}.\n" + how, out / "newlib")
        if patch:
            written.append(patch)
    return written

