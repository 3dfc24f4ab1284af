"""hermitbuild.image: GRUB ISO, xl configuration and qemu boot checks.

The booting parts are real: a tiny multiboot kernel (tests/fixtures/multiboot,
built with the host gcc) is booted with qemu -kernel, and packed by make_iso
into a GRUB ISO (grub-mkrescue) that boots under qemu -cdrom.  The kernel
prints what its loader gave it (command line, modules and their first line),
so the tests see that GRUB loaded "ldhermit.elf" by multiboot and handed the
application over as a multiboot module.  qemu runs with TCG (fast for this
kernel; KVM, where present, is not needed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hermitbuild.errors import RunError
from hermitbuild.image import (boot_iso_check, boot_kernel_check, grub_cfg, make_iso, xl_config,
                               write_xl_config)

from helpers_qemu import KERNEL_BANNER, KERNEL_DONE, build_test_kernel

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
needs_grub = pytest.mark.skipif(
    any(shutil.which(p) is None for p in ("grub-mkrescue", "xorriso", "mformat"))
    or not Path("/usr/lib/grub/i386-pc/multiboot.mod").exists(),
    reason="grub-pc-bin, xorriso and mtools are needed")

TIMEOUT = 60


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_kernel(tmp_path_factory.mktemp("kernel"))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "hello-app"
    path.write_bytes(b"APP-PAYLOAD 7f3a\nsecond line\n")
    return path


# ---- grub.cfg and xl configuration ------------------------------------------------------------

def test_grub_cfg_has_serial_multiboot_module_and_no_wait() -> None:
    cfg = grub_cfg(cmdline="-freq0 -proxy", app_name="hello")
    lines = [ln.strip() for ln in cfg.splitlines()]
    assert lines[:3] == ["serial --unit=0 --speed=115200", "terminal_input serial console",
                         "terminal_output serial console"]
    assert "set timeout=0" in lines
    assert "multiboot /boot/ldhermit.elf -freq0 -proxy" in lines
    assert "module /boot/app hello" in lines
    assert lines.index("multiboot /boot/ldhermit.elf -freq0 -proxy") < lines.index("module /boot/app hello") \
        < lines.index("boot")


def test_grub_cfg_without_serial_or_app() -> None:
    cfg = grub_cfg(app_name=None, serial=False)
    assert "serial" not in cfg and "module" not in cfg
    assert "  multiboot /boot/ldhermit.elf\n" in cfg


@pytest.mark.parametrize("bad", ["a\nb", 'x"y', "a;reboot", "$root", "{x}"])
def test_grub_cfg_rejects_injection(bad: str) -> None:
    with pytest.raises(RunError, match="cannot go into grub.cfg"):
        grub_cfg(cmdline=bad)


def test_xl_config_is_an_hvm_guest_booting_the_iso(tmp_path: Path) -> None:
    text = xl_config(tmp_path / "hello.iso", "hermit-hello", 1024, 2, tmp_path / "serial.log")
    settings = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings["type"] == '"hvm"'
    assert settings["name"] == '"hermit-hello"'
    assert settings["memory"] == "1024"
    assert settings["vcpus"] == "2"
    assert settings["tsc_mode"] == '"native"'
    assert settings["serial"] == f'"file:{tmp_path / "serial.log"}"'
    assert settings["boot"] == '"d"'
    assert f"devtype=cdrom,target={tmp_path / 'hello.iso'}" in settings["disk"]
    assert "access=ro" in settings["disk"]


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "bad name"}, "invalid domain name"),
    ({"memory_mb": 8}, "invalid memory"),
    ({"vcpus": 0}, "invalid vcpus"),
    ({"iso": Path("/tmp/a,b.iso")}, "cannot go into an xl configuration"),
])
def test_xl_config_rejects_bad_values(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"iso": tmp_path / "x.iso", "name": "x", "memory_mb": 512, "vcpus": 1,
            "serial_log": tmp_path / "s.log", **kwargs}
    with pytest.raises(RunError, match=match):
        xl_config(**args)


def test_write_xl_config_writes_the_rendered_text(tmp_path: Path) -> None:
    out = write_xl_config(tmp_path / "cfg" / "x.cfg", tmp_path / "x.iso", "x", 512, 1, tmp_path / "s.log")
    assert out.read_text() == xl_config(tmp_path / "x.iso", "x", 512, 1, tmp_path / "s.log")
    assert [p.name for p in out.parent.iterdir()] == ["x.cfg"]  # no temporary left behind


# ---- real boots ---------------------------------------------------------------------------------

@needs_qemu
def test_kernel_boots_with_qemu_kernel_and_gets_modules(kernel: Path, app: Path, tmp_path: Path) -> None:
    out = boot_kernel_check(kernel, KERNEL_DONE, TIMEOUT, modules=[f"{app} hello arg1"],
                            cmdline="-freq0", serial_log=tmp_path / "serial.log", accel="tcg")
    assert KERNEL_BANNER in out
    assert "magic: ok" in out
    assert "cmdline: " in out and "-freq0" in out
    assert "modules: 1" in out
    assert "hello arg1 | APP-PAYLOAD 7f3a" in out


@needs_qemu
def test_kernel_check_fails_naming_what_was_expected(kernel: Path, tmp_path: Path) -> None:
    # The kernel ends qemu itself (isa-debug-exit) without ever printing this.
    log = tmp_path / "serial.log"
    with pytest.raises(RunError) as info:
        boot_kernel_check(kernel, "no such line", TIMEOUT, serial_log=log, accel="tcg")
    err = info.value
    assert "'no such line'" in err.why and "qemu stopped" in err.why
    assert str(log) in err.fix
    assert KERNEL_BANNER in log.read_text()  # serial log kept for reading
    assert "last serial lines" in err.why


@needs_qemu
def test_boot_check_times_out_with_a_clear_message(tmp_path: Path) -> None:
    # A "kernel" that never prints: qemu keeps running until the timeout ends it.
    blank = tmp_path / "blank.iso"
    blank.write_bytes(b"\0" * 2048 * 32)
    with pytest.raises(RunError) as info:
        boot_iso_check(blank, "HermitCore", 3, serial_log=tmp_path / "s.log", accel="tcg")
    assert "within 3 s" in info.value.why
    assert info.value.expect == "HermitCore"
    assert not (tmp_path / "s.log.pid").exists()


def test_missing_kernel_or_iso_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        boot_kernel_check(tmp_path / "nope.elf", "x", 1)
    with pytest.raises(RunError, match="does not exist"):
        boot_iso_check(tmp_path / "nope.iso", "x", 1)


@needs_qemu
@needs_grub
def test_make_iso_boots_loader_with_app_as_module(kernel: Path, app: Path, tmp_path: Path) -> None:
    iso = make_iso(kernel, app, tmp_path / "out" / "hello.iso", cmdline="-freq0 -proxy",
                   work_dir=tmp_path / "work", app_name="hello")
    assert iso.is_file() and iso.stat().st_size > 0
    assert sorted(p.name for p in iso.parent.iterdir()) == ["hello.iso"]  # atomic: no temp left
    assert list((tmp_path / "work").iterdir()) == []  # staging removed
    out = boot_iso_check(iso, KERNEL_DONE, TIMEOUT, serial_log=tmp_path / "serial.log", accel="tcg")
    assert "magic: ok" in out  # GRUB loaded it by multiboot
    assert "-freq0 -proxy" in out
    assert "modules: 1" in out
    assert "module 0: hello | APP-PAYLOAD 7f3a" in out  # the application, as a module
    assert "Booting `HermitCore'" in out  # GRUB itself talked on the serial console


@needs_grub
def test_make_iso_names_missing_tools(kernel: Path, app: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RunError) as info:
        make_iso(kernel, app, tmp_path / "x.iso", work_dir=tmp_path / "w")
    assert "grub-mkrescue" in info.value.why and "xorriso" in info.value.why
    assert "apt-get install grub-pc-bin xorriso mtools" in info.value.fix
    assert not (tmp_path / "x.iso").exists()


def test_make_iso_needs_the_loader(tmp_path: Path, app: Path) -> None:
    with pytest.raises(RunError, match="loader .* does not exist"):
        make_iso(tmp_path / "ldhermit.elf", app, tmp_path / "x.iso", work_dir=tmp_path / "w")


@needs_qemu
def test_boot_check_stops_qemu_once_the_text_appears(kernel: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    # With "halt" the kernel never ends qemu itself; the check must stop it.
    caplog.set_level("INFO", logger="hermitbuild.image")
    out = boot_kernel_check(kernel, KERNEL_DONE, 600, cmdline="halt",
                            serial_log=tmp_path / "serial.log", accel="tcg")
    assert KERNEL_DONE in out
    assert any("stopped qemu" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "serial.log.pid").exists()


@needs_qemu
@needs_grub
def test_image_main_compiles_packs_configures_and_checks(kernel: Path, tmp_path: Path, capsys) -> None:
    # Host gcc stands in for the cross compiler; the test kernel stands in for ldhermit.elf.
    from hermitbuild.image import image_main
    from helpers_qemu import REPO, fake_toolchain

    settings = fake_toolchain(tmp_path)
    iso = image_main([str(REPO / "examples" / "hello"), "--loader", str(kernel), "--memory", "512",
                      "--check", "--expect", "modules: 1", "--accel", "tcg"], settings)
    assert iso == settings.build_dir.absolute() / "images" / "hello.iso" and iso.is_file()
    cfg = (iso.parent / "hello.cfg").read_text()
    assert 'name = "hello"' in cfg and "memory = 512" in cfg and f"target={iso}" in cfg
    assert "boot check passed: 'modules: 1'" in capsys.readouterr().out
    serial = (iso.parent / "hello.qemu-serial.log").read_bytes().decode("utf-8", "replace")
    assert "module 0: hello | \x7fELF" in serial  # the compiled application, as a module
