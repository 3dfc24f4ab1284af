"""Bootable images of a HermitCore application, for Xen HVM guests (and checks with qemu).

Contract:

- :func:`make_iso` packs ``ldhermit.elf`` (HermitCore's multiboot loader) and
  the application (a multiboot module) into a GRUB rescue ISO made by
  ``grub-mkrescue`` (Debian packages ``grub-pc-bin``, ``xorriso``, ``mtools``).
  GRUB boots at once (timeout 0), talks on the first serial port at 115200
  baud as well as the screen, loads ``/boot/ldhermit.elf <cmdline>`` with
  ``multiboot`` and ``/boot/app <name>`` with ``module``.  The ISO is written
  under a temporary name and renamed into place: no half-written image.
  Missing tools raise :class:`~hermitbuild.errors.RunError` naming the package.
- :func:`xl_config` renders an ``xl`` domain configuration for a Xen HVM
  guest booting that ISO from a virtual CD-ROM: ``type = "hvm"``, memory,
  vcpus, serial console to a file, ``tsc_mode = "native"``;
  :func:`write_xl_config` writes it atomically.
- :func:`boot_iso_check` boots an ISO with ``qemu-system-x86_64 -cdrom`` and
  :func:`boot_kernel_check` boots a multiboot kernel with ``-kernel`` (plus
  modules with ``-initrd``); both send the guest's serial port to a file, stop
  qemu as soon as the expected text appears in it and return the serial
  output.  If qemu stops, or the timeout passes, before the text appears they
  raise ``RunError`` naming the expected text and the serial log (kept).  A
  guest may also end qemu itself through the ``isa-debug-exit`` device (port
  0xf4), which is always present.
- :func:`image_main` is the CLI entry point (``doit image``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Sequence

from .errors import CommandError, RunError
from .qemu import compile_app, is_source, kvm_usable
from .runner import run, tail_of
from .settings import Settings
from .fsutil import write_atomic

logger = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
GRUB_I386_PC = Path("/usr/lib/grub/i386-pc")
ISO_TOOLS = {  # program -> Debian package
    "grub-mkrescue": "grub-pc-bin (grub-common)",
    "xorriso": "xorriso",
    "mformat": "mtools",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SAFE_ARG_RE = re.compile(r"^[^\n\r\"';{}\\$]*$")


# HermitCore's loader (arch/x86_64/loader/uart.c) picks its UART from `uart=io:<hex port>` on the
# multiboot command line and passes it on to the kernel; without it nothing reaches COM1.
HERMIT_SERIAL_CMDLINE = "uart=io:0x3f8"


def grub_cfg(*, cmdline: str = "", app_name: str | None = "app", serial: bool = True) -> str:
    """The GRUB configuration of the ISO (see the module docstring)."""
    for what, value in (("kernel command line", cmdline), ("application name", app_name or "")):
        if not _SAFE_ARG_RE.match(value):
            raise RunError(f"the {what} {value!r} cannot go into grub.cfg",
                           "it holds a newline, quote, semicolon, brace, backslash or $",
                           f"use a plain {what} without those characters")
    lines = []
    if serial:
        lines += ["serial --unit=0 --speed=115200",
                  "terminal_input serial console",
                  "terminal_output serial console"]
    lines += ["set timeout=0",
              "set default=0",
              'menuentry "HermitCore" {',
              f"  multiboot /boot/ldhermit.elf {cmdline}".rstrip()]
    if app_name is not None:
        lines.append(f"  module /boot/app {app_name}".rstrip())
    lines += ["  boot", "}"]
    return "\n".join(lines) + "\n"


def _require_tools(tools: dict[str, str]) -> None:
    missing = [f"{prog} (package {pkg})" for prog, pkg in tools.items() if shutil.which(prog) is None]
    if missing:
        raise RunError("cannot make a bootable image: tools missing",
                       "not found on PATH: " + ", ".join(missing),
                       "install them, e.g. `apt-get install grub-pc-bin xorriso mtools "
                       "qemu-system-x86` (or run inside the build container, which has them)")


def make_iso(loader: Path, app: Path | None, out: Path, *, cmdline: str = "", serial: bool = True,
             work_dir: Path, app_name: str | None = None) -> Path:
    """Make a GRUB ISO booting ``loader`` with ``app`` as multiboot module; returns ``out``."""
    loader, out = Path(loader), Path(out)
    for what, path in (("loader", loader), ("application", app)):
        if path is not None and not Path(path).is_file():
            raise RunError(f"the {what} {path} does not exist",
                           "make_iso packs existing files only",
                           "build the toolchain (ldhermit.elf is installed in "
                           "<prefix>/bin) and the application first" if what == "loader"
                           else "compile the application first (e.g. `doit boot` does)")
    _require_tools(ISO_TOOLS)
    if not (GRUB_I386_PC / "multiboot.mod").exists():
        raise RunError("GRUB's BIOS platform files are missing",
                       f"{GRUB_I386_PC}/multiboot.mod does not exist, so grub-mkrescue cannot "
                       "make a BIOS-bootable ISO",
                       "install Debian's grub-pc-bin package")
    name = app_name or (Path(app).name if app is not None else None)
    cfg = grub_cfg(cmdline=cmdline, app_name=name, serial=serial)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iso-", dir=work_dir) as tmp:
        root = Path(tmp) / "root"
        (root / "boot" / "grub").mkdir(parents=True)
        shutil.copyfile(loader, root / "boot" / "ldhermit.elf")
        if app is not None:
            shutil.copyfile(app, root / "boot" / "app")
        (root / "boot" / "grub" / "grub.cfg").write_text(cfg, encoding="utf-8")
        tmp_out = out.with_name(f".{out.name}.tmp{os.getpid()}")
        try:
            run(["grub-mkrescue", "-o", tmp_out, root], log_path=Path(tmp) / "grub-mkrescue.log",
                capture=True)
        except CommandError as err:
            tmp_out.unlink(missing_ok=True)
            raise RunError(f"grub-mkrescue could not make {out.name}", err.why,
                           "check that grub-pc-bin, xorriso and mtools are installed and that "
                           f"{out.parent} has free space") from None
        os.replace(tmp_out, out)
    logger.info("bootable ISO written: %s", out)
    return out


def _xl_string(value: str, what: str) -> str:
    if not _SAFE_ARG_RE.match(value) or "," in value:
        raise RunError(f"the {what} {value!r} cannot go into an xl configuration",
                       "it holds a comma, quote, newline, semicolon, brace, backslash or $",
                       f"use a {what} without those characters")
    return value


def xl_config(iso: Path, name: str, memory_mb: int, vcpus: int, serial_log: Path) -> str:
    """The ``xl`` configuration of a Xen HVM guest booting ``iso`` (see the module docstring)."""
    if not _NAME_RE.match(name):
        raise RunError(f"invalid domain name {name!r}",
                       "Xen domain names here are letters, digits, '_', '.' and '-'",
                       "use e.g. hermit-hello")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 16:
        raise RunError(f"invalid memory size {memory_mb!r} MiB", "an HVM guest needs at least 16 MiB",
                       "use e.g. 1024")
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or vcpus < 1:
        raise RunError(f"invalid vcpus {vcpus!r}", "a guest needs at least one vCPU", "use 1")
    iso_s = _xl_string(str(Path(iso).absolute()), "ISO path")
    log_s = _xl_string(str(Path(serial_log).absolute()), "serial log path")
    return "\n".join([
        "# Xen HVM guest booting a HermitCore application from a GRUB ISO (made by hermitbuild).",
        f"# Start: xl create {name}.cfg   (add -c to attach the console)",
        f'name = "{name}"',
        'type = "hvm"',
        f"memory = {memory_mb}",
        f"vcpus = {vcpus}",
        f'disk = [ "format=raw,vdev=hdc,access=ro,devtype=cdrom,target={iso_s}" ]',
        'boot = "d"',
        f'serial = "file:{log_s}"',
        'tsc_mode = "native"',
        "vnc = 0",
        "sdl = 0",
        'on_poweroff = "destroy"',
        'on_reboot = "destroy"',
        'on_crash = "destroy"',
        "",
    ])


def write_xl_config(path: Path, iso: Path, name: str, memory_mb: int, vcpus: int,
                    serial_log: Path) -> Path:
    """Write :func:`xl_config` to ``path`` atomically; returns ``path``."""
    text = xl_config(iso, name, memory_mb, vcpus, serial_log)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), text)
    return Path(path)


# ---- boot checks with qemu -------------------------------------------------------------------------

def _accel(accel: str) -> str:
    if accel == "auto":
        return "kvm:tcg" if kvm_usable() else "tcg"
    return accel


def _boot_check(qemu_args: Sequence[str], expect: str, timeout: float, *, what: str,
                serial_log: Path, accel: str, memory: str) -> str:
    if shutil.which(QEMU) is None:
        raise RunError(f"{QEMU} is not installed", "the boot check runs the image in qemu",
                       "install Debian's qemu-system-x86 package")
    serial_log = Path(serial_log).absolute()
    serial_log.parent.mkdir(parents=True, exist_ok=True)
    serial_log.unlink(missing_ok=True)
    pidfile = serial_log.with_name(serial_log.name + ".pid")
    pidfile.unlink(missing_ok=True)
    qemu_log = serial_log.with_name(serial_log.name + ".qemu")
    qemu_log.unlink(missing_ok=True)
    argv = [QEMU, *qemu_args, "-m", memory, "-machine", f"accel={_accel(accel)}",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{serial_log}", "-pidfile", str(pidfile),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]

    found = threading.Event()
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            try:
                text = serial_log.read_bytes().decode("utf-8", "replace")
            except OSError:
                text = ""
            if expect in text:
                found.set()
                try:
                    pid = int(pidfile.read_text().strip())
                    os.kill(pid, signal.SIGTERM)  # the qemu this function started
                    logger.info("%r appeared on the serial port; stopped qemu (pid %d)", expect, pid)
                except (OSError, ValueError):
                    pass  # already gone
                return
            finished.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    timed_out = False
    try:
        done = run(argv, log_path=qemu_log, check=False, timeout=timeout)
        returncode: int | None = done.returncode
    except CommandError as err:
        if not err.timed_out:
            raise RunError(f"could not start {QEMU} for {what}", err.why, err.fix) from None
        timed_out, returncode = True, None
    finally:
        finished.set()
        watcher.join()
    text = serial_log.read_bytes().decode("utf-8", "replace") if serial_log.exists() else ""
    pidfile.unlink(missing_ok=True)
    if found.is_set() or expect in text:
        qemu_log.unlink(missing_ok=True)
        return text
    if timed_out:
        why = f"{expect!r} did not appear on the serial port within {timeout:g} s"
    else:
        why = f"qemu stopped (status {returncode}) before {expect!r} appeared on the serial port"
    tail = "\n".join(text.splitlines()[-15:])
    qemu_tail = tail_of(qemu_log, 10)
    if tail:
        why += "\n  last serial lines:\n" + "\n".join("    | " + ln for ln in tail.splitlines())
    if qemu_tail:
        why += "\n  qemu said:\n" + "\n".join("    | " + ln for ln in qemu_tail.splitlines())
    raise RunError(f"boot check of {what} failed", why,
                   f"read the serial log {serial_log} (and {qemu_log}); check the loader, the "
                   "application and the boot configuration",
                   expect=expect, serial_log=str(serial_log))


def boot_iso_check(iso: Path, expect: str, timeout: float, *, serial_log: Path | None = None,
                   accel: str = "auto", memory: str = "1G") -> str:
    """Boot ``iso`` from a CD-ROM in qemu until ``expect`` appears on the serial port."""
    iso = Path(iso).absolute()
    if not iso.is_file():
        raise RunError(f"ISO {iso} does not exist", "nothing to boot", "make it with `doit image`")
    return _boot_check(["-cdrom", str(iso), "-boot", "d"], expect, timeout, what=iso.name,
                       serial_log=serial_log or iso.with_name(iso.name + ".serial.log"),
                       accel=accel, memory=memory)


def boot_kernel_check(kernel: Path, expect: str, timeout: float, modules: Sequence[Path | str] = (),
                      *, cmdline: str = "", serial_log: Path | None = None, accel: str = "auto",
                      memory: str = "256M") -> str:
    """Boot a multiboot (v1, ELF32) ``kernel`` with qemu ``-kernel`` until ``expect`` appears.

    ``modules``: files (optionally followed by their command line, "path args")
    handed over as multiboot modules.
    """
    kernel = Path(kernel).absolute()
    if not kernel.is_file():
        raise RunError(f"kernel {kernel} does not exist", "nothing to boot",
                       "build it first")
    args = ["-kernel", str(kernel)]
    if cmdline:
        args += ["-append", cmdline]
    if modules:
        mods = [str(m) for m in modules]
        if any("," in m for m in mods):
            raise RunError("a multiboot module path or argument holds a comma",
                           "qemu separates -initrd modules with commas", "rename the file")
        args += ["-initrd", ",".join(mods)]
    return _boot_check(args, expect, timeout, what=kernel.name,
                       serial_log=serial_log or kernel.with_name(kernel.name + ".serial.log"),
                       accel=accel, memory=memory)


# ---- CLI --------------------------------------------------------------------------------------------

HERMIT_BANNER = "This is Hermit"  # HermitCore's first kernel log line (kernel/main.c)


def _default_expect(app: Path) -> str:
    expected = (app if app.is_dir() else app.parent) / "expected.txt"
    if expected.is_file():
        lines = [ln.strip() for ln in expected.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines:
            return lines[0]
    return HERMIT_BANNER


def image_main(argv: Sequence[str], settings: Settings, *, exec_prefix: Sequence[str] = ()) -> Path:
    """``doit image -- <app> [--name N --memory MB --vcpus N --cmdline S --check --expect T]``.

    Compiles ``app`` if it is C source (with :func:`hermitbuild.qemu.compile_app`),
    makes ``<build>/images/<name>.iso`` with ``<prefix>/bin/ldhermit.elf`` and
    writes ``<name>.cfg`` beside it; ``--check`` boots the ISO in qemu and waits
    for ``--expect`` on the serial port.  Returns the ISO path.
    """

    p = argparse.ArgumentParser(prog="doit image", description="Make a bootable GRUB ISO and a "
                                "Xen HVM (xl) configuration for a HermitCore application.")
    p.add_argument("app", help="a .c file, a directory of .c files, or a built unikernel")
    p.add_argument("--name", help="domain and file name (default: the application's name)")
    p.add_argument("--memory", type=int, default=1024, help="guest memory in MiB (default 1024)")
    p.add_argument("--vcpus", type=int, default=1, help="virtual CPUs (default 1)")
    p.add_argument("--cmdline", default=HERMIT_SERIAL_CMDLINE,
                   help="kernel command line for ldhermit.elf (default: %(default)s, i.e. COM1: HermitCore's "
                        "loader and kernel only write to a serial port named on the command line)")
    p.add_argument("--loader", type=Path, default=None,
                   help="multiboot loader (default <prefix>/bin/ldhermit.elf)")
    p.add_argument("--out-dir", type=Path, default=None, help="default <build_dir>/images")
    p.add_argument("--check", action="store_true", help="boot the ISO in qemu afterwards")
    p.add_argument("--expect", default="",
                   help="text the check waits for on the serial port (default: the first line of "
                   "the example's expected.txt, else HermitCore's boot banner 'This is Hermit')")
    p.add_argument("--timeout", type=float, default=120.0, help="boot check timeout in seconds")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="qemu accelerator for the check (default: KVM when usable)")
    ns = p.parse_args(list(argv))

    app = Path(ns.app).absolute()
    expect = ns.expect or _default_expect(app)
    name = ns.name or (app.stem if app.is_file() and is_source(app) else app.name)
    out_dir = (ns.out_dir or settings.build_dir / "images").absolute()
    if is_source(app):
        app = compile_app(app, settings.work_dir / "image" / name, settings, exec_prefix=exec_prefix,
                          log_path=settings.logs_dir / "image" / f"{name}.compile.log")
    loader = ns.loader or settings.prefix / "bin" / "ldhermit.elf"
    iso = make_iso(loader, app, out_dir / f"{name}.iso", cmdline=ns.cmdline,
                   work_dir=settings.work_dir / "image", app_name=name)
    cfg = write_xl_config(out_dir / f"{name}.cfg", iso, name, ns.memory, ns.vcpus,
                          out_dir / f"{name}.serial.log")
    print(f"bootable ISO: {iso}\nxl configuration: {cfg}  (start with: xl create -c {cfg})")
    if ns.check:
        boot_iso_check(iso, expect, ns.timeout, serial_log=out_dir / f"{name}.qemu-serial.log",
                       accel=ns.accel)
        print(f"boot check passed: {expect!r} appeared on the serial port")
    return iso
