"""`doit debug`'s machinery with real qemu (TCG) and real gdb: a test kernel that, like
HermitCore's loader, starts in 32-bit protected mode and switches to long mode, booted
frozen at its first instruction under qemu's gdb stub; gdb attaches with the kernel's
symbols, stops in a 64-bit function (a hardware breakpoint), prints the backtrace and a
local variable.  Nothing (qemu, gdb) may outlive a session, whether gdb ends it or the
timeout does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hermitbuild import debug
from hermitbuild.errors import RunError
from hermitbuild.settings import Settings
from tests.helpers_qemu import build_longmode_kernel

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> tuple[Path, Path]:
    for tool in ("gdb", "qemu-system-x86_64", "gcc", "objcopy"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/setup --tests installs it)")
    return build_longmode_kernel(tmp_path_factory.mktemp("longmode"))


def _qemu(elf32: Path, port: int, serial: Path) -> list[str]:
    """qemu as HermitCore's patched proxy starts it with HERMIT_DEBUG=1 (patches/hermit/0005)."""
    return ["qemu-system-x86_64", "-kernel", str(elf32), "-display", "none", "-m", "64",
            "-serial", f"file:{serial}", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-gdb", f"tcp:127.0.0.1:{port}", "-S"]


def _no_qemu_left(elf32: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", str(elf32)], capture_output=True).returncode != 0:
            return
        time.sleep(0.2)
    pytest.fail(f"a qemu booting {elf32} is still running")


def test_gdb_stops_in_a_64_bit_function_after_the_switch_to_long_mode(kernel, tmp_path):
    elf64, elf32 = kernel
    port = _free_port()
    gdb = debug.gdb_argv("gdb", elf64, breaks=["report"], commands=["info registers rip", "bt", "up",
                                                                   "print answer"],
                         batch=True, port=port)
    done = debug.session(_qemu(elf32, port, tmp_path / "serial.log"), gdb, boot_log=tmp_path / "boot.log",
                         timeout=120)
    out = done.output
    assert done.returncode == 0, out
    assert "Breakpoint 1, report (value=42)" in out
    assert "compute (x=7)" in out and "kmain64 ()" in out  # the backtrace
    assert "$1 = 42" in out  # `answer`, one frame up
    assert "'g' packet reply is too long" not in out
    assert "in long mode" in (tmp_path / "serial.log").read_text()  # the kernel ran up to there
    _no_qemu_left(elf32)


def test_the_32_bit_loader_view_needs_no_patched_gdb(kernel, tmp_path):
    """The guide's situation: gdb given the 32-bit ELF (like ldhermit.elf) attaches while the
    CPU runs 32-bit code.  With the architecture set first, gdb 13 gets no 'g'-packet error."""
    _, elf32 = kernel
    port = _free_port()
    gdb = debug.gdb_argv("gdb", elf32, breaks=["report"], commands=["up", "print answer"], batch=True,
                         port=port)
    done = debug.session(_qemu(elf32, port, tmp_path / "serial.log"), gdb, boot_log=tmp_path / "boot.log",
                         timeout=120)
    assert done.returncode == 0 and "'g' packet reply is too long" not in done.output, done.output
    assert "Breakpoint 1, report" in done.output and "$1 = 42" in done.output
    _no_qemu_left(elf32)


def test_a_session_that_never_stops_ends_at_the_timeout_and_leaves_nothing(kernel, tmp_path):
    elf64, elf32 = kernel
    port = _free_port()
    # no exit device: the kernel ends in a halt loop, so `continue` never comes back
    qemu = [a for a in _qemu(elf32, port, tmp_path / "serial.log") if "isa-debug-exit" not in a]
    qemu.remove("-device")
    gdb = debug.gdb_argv("gdb", elf64, commands=["continue"], batch=True, port=port)
    start = time.monotonic()
    with pytest.raises(RunError) as exc:
        debug.session(qemu, gdb, boot_log=tmp_path / "boot.log", timeout=8)
    assert time.monotonic() - start < 60
    assert "ran longer than 8 s" in exc.value.what and "--break" in exc.value.fix
    _no_qemu_left(elf32)


def test_gdb_command_line_sets_the_architecture_before_attaching():
    argv = debug.gdb_argv("gdb", Path("app"), breaks=["main"], batch=True)
    script = [argv[i + 1] for i, a in enumerate(argv) if a == "-ex"]
    assert script.index("set architecture i386:x86-64") < script.index("target remote 127.0.0.1:1234")
    assert script[-4:] == ["hbreak main", "continue", "bt", "kill"] and argv[-1] == "app"
    assert "-batch" not in debug.gdb_argv("gdb", Path("app"))  # interactive by default


def test_debug_main_errors_are_clear(tmp_path):
    s = Settings(root=ROOT, prefix=tmp_path / "p", build_dir=tmp_path / "b")
    with pytest.raises(RunError, match="does not exist"):
        debug.debug_main([str(tmp_path / "nope.elf"), "--batch"], s)
    app = tmp_path / "app.elf"
    app.write_bytes(b"\x7fELF")
    with pytest.raises(RunError, match="no gdb found"):
        debug.debug_main([str(app), "--batch", "--gdb", str(tmp_path / "no-gdb")], s)
