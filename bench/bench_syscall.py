#!/usr/bin/env python3
"""Bench: adding a system call with hermitbuild vs. the HermitCore guide's procedure.

Both start from the same built fixture trees (tests/fixtures/trees: a miniature
libhermit built with cmake, a miniature newlib libc/sys/hermit configured and built
in-tree with the host gcc against Debian's newlib headers), padded with extra C files
(--pad-newlib, --pad-kernel) so that each tree's full build costs as many times its
incremental build as the real tree's does (REAL_RATIOS, measured on newlib 02d2b87 and
libhermit b27b194; the bench prints the fixture's own ratios, measured in the same run,
beside them), and both end with the libraries "installed" (copied into a prefix):

- guide:       the guide's edits for `rename` are made (not timed: that is the
               reader typing), then what the guide runs is timed: kernel `make` +
               install; newlib `make distclean`, automake-1.11, ./configure, `make`,
               install.
- hermitbuild: `doit syscall add rename` (cli_main: table + generated files +
               Makefile.in edited as automake 1.11 writes it; automake itself
               runs only when that edit is not sure, and the bench says how
               often it ran) is timed together with what `doit toolchain` then has to
               do: kernel cmake re-glob + incremental make + install; newlib
               incremental make (config.status regenerates the Makefile) + install.

Prints both times and the ratio guide / hermitbuild.  Needs automake-1.11,
autoconf2.64, cmake, gcc and libnewlib-dev.  What it leaves out on both sides: the
containers and doit (bench_build.py measures those); so it is the ratio of the work
itself, on trees the size of the real ones relative to an incremental change.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from hermitbuild.runner import run  # noqa: E402
from hermitbuild.settings import Settings  # noqa: E402
from hermitbuild.syscalls import cli_main, host_automake  # noqa: E402

from helpers_syscalls import HERMIT_REL, prepare_fixture, tool_env  # noqa: E402

# full build / incremental build (`make -j2` after `doit syscall add`, in the kept build directory) of
# the real trees, 2 cores, in the toolchain image (issue 14 note, 2026-12-04, with the deterministic
# archives and patches/hermit/0007): newlib 02d2b87 32.6 s / 0.60 s; libhermit b27b194 (kernel,
# loader, proxy, iRCCE) 9.7 s / 0.34 s
REAL_RATIOS = {"newlib": 32.6 / 0.60, "kernel": 9.7 / 0.34}
TIMES: dict[str, float] = {}
# fixture padding that comes nearest those ratios on the machine they were measured on (see --help);
# the fixture's incremental newlib build re-archives its whole lib.a, so its ratio grows slowly
# with the padding and stays below the real tree's (the bench's ratio is then the lower one)
PAD_NEWLIB = 1000  # 40x on 2026-12-04 (real 54x)
PAD_KERNEL = 260  # 25-28x (real 29x)


def timed(name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    start = time.monotonic()
    sh(argv, cwd, env)
    TIMES[name] = TIMES.get(name, 0.0) + time.monotonic() - start


def gcc_include() -> str:
    return subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                          check=True).stdout.strip()


def newlib_env() -> dict[str, str]:
    env = tool_env()
    env["CFLAGS"] = (f"-O2 -nostdinc -isystem /usr/include/newlib -isystem {gcc_include()} "
                     "-DREENTRANT_SYSCALLS_PROVIDED -D__DYNAMIC_REENT__")
    return env


def sh(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    run(argv, cwd=cwd, env=env, replace_env=env is not None, capture=True)


def pad(kernel: Path, newlib: Path, newlib_count: int, kernel_count: int) -> None:
    """Add small C files to the kernel module and to lib_a_SOURCES."""
    hermit = newlib / HERMIT_REL
    names = []
    for i in range(max(newlib_count, kernel_count)):
        body = "".join(f"int pad{i}_{j}(int x) {{ return x * {j} + {i}; }}\n" for j in range(40))
        if i < kernel_count:
            (kernel / "kernel" / f"pad{i}.c").write_text(body)
        if i < newlib_count:
            (hermit / f"pad{i}.c").write_text('#include "config.h"\n' + body)
            names.append(f"pad{i}.c")
    am = hermit / "Makefile.am"
    am.write_text(am.read_text().replace("close.c unlink.c", "close.c unlink.c " + " ".join(names)))
    sh(["automake-1.11", "--cygnus", "Makefile"], hermit, tool_env())
    shutil.rmtree(hermit / "autom4te.cache", ignore_errors=True)


def initial_build(kernel: Path, newlib: Path, prefix: Path, jobs: int, label: str) -> None:
    hermit = newlib / HERMIT_REL
    sh(["autoconf2.64"], hermit, tool_env())
    shutil.rmtree(hermit / "autom4te.cache", ignore_errors=True)
    sh(["./configure"], hermit, newlib_env())
    timed(f"{label} newlib full", ["make", f"-j{jobs}"], hermit, newlib_env())
    build = kernel / "build"
    build.mkdir()
    sh(["cmake", "-DCMAKE_C_FLAGS=-ffreestanding -nostdinc -O2", ".."], build)
    timed(f"{label} kernel full", ["make", f"-j{jobs}"], build)
    install(kernel, newlib, prefix)


def install(kernel: Path, newlib: Path, prefix: Path) -> None:
    (prefix / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy2(newlib / HERMIT_REL / "lib.a", prefix / "lib" / "libc.a")
    shutil.copy2(kernel / "build" / "libhermit.a", prefix / "lib" / "libhermit.a")


GUIDE_KERNEL = """
int sys_rename(const char *oldpath, const char *newpath)
{
	/* you will do the implementation later, for now just return success :) */
	(void)oldpath;
	(void)newpath;
	return 0;
}
"""

GUIDE_NEWLIB = """#include "config.h"
#include <reent.h>
#include <errno.h>
#include "syscall.h"

int
_rename_r (struct _reent *p, const char *oldpath, const char *newpath)
{
	int ret;

	ret = sys_rename(oldpath, newpath);
	if (ret < 0) {
		p->_errno = -ret;
		ret = -1;
	}

	return ret;
}

int
rename (const char *oldpath, const char *newpath)
{
	return _rename_r(_REENT, oldpath, newpath);
}
"""


def guide_edits(kernel: Path, newlib: Path) -> None:
    """What the reader of the guide types by hand (not timed)."""
    with open(kernel / "kernel" / "syscall.c", "a") as fh:
        fh.write(GUIDE_KERNEL)
    for header in (kernel / "include/hermit/syscall.h", newlib / HERMIT_REL / "syscall.h"):
        text = header.read_text()
        header.write_text(text.replace("int sys_close(int fd);",
                                       "int sys_close(int fd);\nint sys_rename(const char *oldpath, "
                                       "const char *newpath);"))
    hermit = newlib / HERMIT_REL
    (hermit / "rename.c").write_text(GUIDE_NEWLIB)
    am = hermit / "Makefile.am"
    am.write_text(am.read_text().replace("close.c unlink.c", "close.c unlink.c rename.c"))


def guide_procedure(kernel: Path, newlib: Path, prefix: Path, jobs: int) -> float:
    hermit = newlib / HERMIT_REL
    start = time.monotonic()
    sh(["make", f"-j{jobs}"], kernel / "build")
    sh(["make", "distclean"], hermit, newlib_env())
    sh(["automake-1.11", "--cygnus", "Makefile"], hermit, tool_env())
    sh(["./configure"], hermit, newlib_env())
    sh(["make", f"-j{jobs}"], hermit, newlib_env())
    install(kernel, newlib, prefix)
    return time.monotonic() - start


def hermitbuild_procedure(root: Path, kernel: Path, newlib: Path, prefix: Path, jobs: int) -> float:
    (root / "syscalls").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "syscalls" / "table.yaml", root / "syscalls" / "table.yaml")
    settings = Settings(root=root, build_dir=root / "build")
    hermit = newlib / HERMIT_REL
    real_automake = host_automake()

    def automake(directory: Path) -> None:
        TIMES["automake runs"] = TIMES.get("automake runs", 0) + 1
        real_automake(directory)

    start = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(["add", "rename"], settings, trees=lambda: (kernel, newlib), automake=automake)
    if rc != 0:
        raise SystemExit("doit syscall add rename failed")
    TIMES["add"] = time.monotonic() - start
    sh(["cmake", "."], kernel / "build")  # kernel/*.c is globbed at configure time
    timed("kernel incremental", ["make", f"-j{jobs}"], kernel / "build")
    timed("newlib incremental", ["make", f"-j{jobs}"], hermit, newlib_env())
    install(kernel, newlib, prefix)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pad-newlib", type=int, default=PAD_NEWLIB,
                        help=f"extra C files in the newlib fixture (default {PAD_NEWLIB})")
    parser.add_argument("--pad-kernel", type=int, default=PAD_KERNEL,
                        help=f"extra C files in the kernel fixture (default {PAD_KERNEL})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    for tool in ("automake-1.11", "autoconf2.64", "cmake", "gcc", "make"):
        if shutil.which(tool) is None:
            print(f"bench_syscall: {tool} is missing", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-syscall-") as tmp:
        base = Path(tmp)
        results = {}
        for label in ("guide", "hermitbuild"):
            work = base / label
            work.mkdir()
            kernel, newlib = prepare_fixture(work)
            pad(kernel, newlib, args.pad_newlib, args.pad_kernel)
            prefix = work / "prefix"
            initial_build(kernel, newlib, prefix, args.jobs, label)
            if label == "guide":
                guide_edits(kernel, newlib)
                results[label] = guide_procedure(kernel, newlib, prefix, args.jobs)
            else:
                results[label] = hermitbuild_procedure(work / "project", kernel, newlib, prefix, args.jobs)
            objs = subprocess.run(["ar", "t", str(prefix / "lib" / "libc.a")], capture_output=True,
                                  text=True).stdout
            if "rename" not in objs:
                raise SystemExit(f"{label}: rename is not in the installed libc.a")
    g, h = results["guide"], results["hermitbuild"]
    print(f"fixture trees padded with {args.pad_newlib} (newlib) and {args.pad_kernel} (kernel) C files, "
          f"make -j{args.jobs}")
    for tree in ("newlib", "kernel"):
        full, inc = TIMES[f"hermitbuild {tree} full"], TIMES[f"{tree} incremental"]
        print(f"{tree:6} full build {full:6.2f} s, incremental build {inc:5.2f} s: {full / inc:5.1f}x "
              f"(real tree: {REAL_RATIOS[tree]:.1f}x)")
    print(f"guide procedure (distclean, automake, configure, full rebuild): {g:7.2f} s")
    print(f"doit syscall add rename + incremental rebuild:                  {h:7.2f} s "
          f"(the add: {TIMES['add']:.2f} s, automake runs in it: {TIMES.get('automake runs', 0):.0f})")
    print(f"ratio guide / hermitbuild: {g / h:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
