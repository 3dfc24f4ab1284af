"""Test helpers for hermitbuild.qemu and hermitbuild.image.

- ``build_longmode_kernel(dest)``: builds tests/fixtures/longmode (entered in 32-bit
  protected mode like HermitCore's loader, then long mode and a 64-bit function with a
  known local), for the debugger tests.
- ``build_test_kernel(dest)``: builds tests/fixtures/multiboot (a multiboot v1
  ELF32 kernel that reports on COM1 what its loader gave it) with the host gcc.
- ``fake_toolchain(tmp)``: a prefix whose ``bin/x86_64-hermit-gcc`` is the
  host gcc (plus a stub library standing in for HermitCore's libc additions
  ``my_syscall``/``rename``) and whose ``bin/proxy`` is a stand-in that behaves
  like HermitCore's proxy towards its caller: it records argv and the HERMIT_*
  environment to ``<prefix>/proxy-record.json``, runs the "unikernel" (a host
  program) with the arguments, exits with its status, dumps a kernel log at
  exit when HERMIT_VERBOSE=1, and on SIGTERM dumps the log and exits 0 (as
  proxy.c's exit_handler does).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from hermitbuild.runner import run
from hermitbuild.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "multiboot"
REPO = Path(__file__).resolve().parent.parent
KERNEL_BANNER = "hermitbuild test kernel: booted"
KERNEL_DONE = "hermitbuild test kernel: done"


LONGMODE = Path(__file__).resolve().parent / "fixtures" / "longmode"


def build_longmode_kernel(dest: Path) -> tuple[Path, Path]:
    """Compile tests/fixtures/longmode (32-bit multiboot entry, then long mode and 64-bit C):
    (the x86-64 ELF with debug information, for gdb; the same as ELF32, for qemu -kernel)."""
    dest.mkdir(parents=True, exist_ok=True)
    elf64, elf32 = dest / "kernel64.elf", dest / "kernel.elf"
    run(["gcc", "-m64", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector", "-mno-red-zone",
         "-fno-asynchronous-unwind-tables", "-O0", "-g", "-nostdlib", "-static", "-no-pie",
         f"-Wl,-T,{LONGMODE / 'link.ld'}", "-Wl,--build-id=none", "-Wl,-z,max-page-size=0x1000",
         LONGMODE / "boot.S", LONGMODE / "kernel.c", "-o", elf64])
    run(["objcopy", "-O", "elf32-i386", elf64, elf32])
    return elf64, elf32


def build_test_kernel(dest: Path) -> Path:
    """Compile the multiboot test kernel into ``dest/kernel.elf``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "kernel.elf"
    run(["gcc", "-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector",
         "-fno-asynchronous-unwind-tables", "-O2", "-nostdlib", "-static", "-no-pie",
         f"-Wl,-T,{FIXTURES / 'link.ld'}", "-Wl,--build-id=none", "-Wl,-z,max-page-size=0x1000",
         FIXTURES / "boot.S", FIXTURES / "kernel.c", "-o", out])
    return out


PROXY = r'''#!{python}
import json, os, signal, subprocess, sys

record = {record!r}
data = {{"argv": sys.argv, "env": {{k: v for k, v in os.environ.items() if k.startswith("HERMIT_")}}}}
with open(record, "w") as fh:
    json.dump(data, fh)

def dump_log():
    if os.environ.get("HERMIT_VERBOSE") == "1":
        print("\nDump kernel log:")
        print("================\n")
        print("[0.000][0:0][INFO] fake kernel log line")
    sys.stdout.flush()

def on_term(sig, frame):
    dump_log()
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
print("qemu startup command: qemu-system-x86_64 -fake", flush=True)
if len(sys.argv) < 2:
    print("usage: proxy <unikernel>", file=sys.stderr)
    sys.exit(1)
status = subprocess.call(sys.argv[1:])
dump_log()
sys.exit(status if status >= 0 else 1)
'''

STUB_H = "#ifndef MY_SYSCALL_H\n#define MY_SYSCALL_H\nint my_syscall(int x);\n#endif\n"
STUB_C = """#include <stdio.h>
int my_syscall(int x) { return x + 42; }
%s
"""
GCC = """#!/bin/sh
exec gcc -I{inc} "$@" {stub}
"""


GXX = """#!/bin/sh
exec g++ "$@"
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def fake_toolchain(tmp: Path, *, stub_rename: bool = True) -> Settings:
    """Settings whose prefix holds the stand-in compiler and proxy (see the module docstring)."""
    prefix = tmp / "prefix"
    bindir = prefix / "bin"
    bindir.mkdir(parents=True)
    inc = prefix / "stub"
    inc.mkdir()
    (inc / "my_syscall.h").write_text(STUB_H)
    (inc / "stub.c").write_text(STUB_C % ("int rename(const char *a, const char *b) { return 0; }"
                                          if stub_rename else ""))
    _executable(bindir / "x86_64-hermit-gcc", GCC.format(inc=inc, stub=inc / "stub.c"))
    _executable(bindir / "x86_64-hermit-g++", GXX)
    _executable(bindir / "proxy", PROXY.format(python=sys.executable,
                                               record=str(prefix / "proxy-record.json")))
    return Settings(root=tmp, prefix=prefix, build_dir=tmp / "build")


def proxy_record(settings: Settings) -> dict:
    return json.loads((settings.prefix / "proxy-record.json").read_text())


def write_c(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n" + body)
    return path


__all__ = ["build_test_kernel", "fake_toolchain", "proxy_record", "write_c", "REPO",
           "KERNEL_BANNER", "KERNEL_DONE"]
