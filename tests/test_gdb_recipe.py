"""The gdb recipe: both variants load; the current one is proven by a build.

The slow test builds recipes/gdb.yaml's 13.1 variant in the toolchain container from Debian
bookworm's gdb-source package (``/usr/src/gdb.tar.xz``: 13.1 with Debian's patches) as the
source override, the way GCC 12 is proven with gcc-12-source, and then debugs the long-mode
test kernel with the gdb it built: qemu and gdb in one toolchain container (the stub on
that container's loopback), a hardware breakpoint in a 64-bit function, the backtrace and a
local variable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hermitbuild.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
GDB_SOURCE = Path("/usr/src/gdb.tar.xz")


@pytest.mark.parametrize("variant, patched", [("13.1", False), ("8.0", True)])
def test_both_variants_load(variant: str, patched: bool) -> None:
    rec = load_recipe(ROOT / "recipes" / "gdb.yaml", ROOT / "patches", {"gdb_variant": variant})
    assert rec.version == variant and rec.variant == variant
    assert [s.kind for s in rec.sources] == ["tarball"] and len(rec.sources[0].sha256) == 64
    assert bool(rec.patches) == patched  # the 'g'-packet patch only for the guide's 8.0
    assert any("--program-prefix={target}-" in a for a in rec.steps[0].args)


@pytest.mark.slow
@pytest.mark.podman
def test_gdb_13_builds_from_gdb_source_and_debugs_the_long_mode_kernel(tmp_path: Path) -> None:
    if not GDB_SOURCE.is_file():
        pytest.fail(f"{GDB_SOURCE} is missing: scripts/setup --tests installs Debian's gdb-source")
    from helpers_podman import ensure_base_image, podman_settings, require_podman
    from helpers_qemu import build_longmode_kernel

    from hermitbuild import build, container, debug
    from hermitbuild.recipe import load_recipes
    from hermitbuild.unpack import safe_extract

    require_podman()
    ensure_base_image(tmp_path)
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True)
    shutil.copy2(ROOT / "recipes" / "gdb.yaml", root / "recipes" / "gdb.yaml")
    shutil.copytree(ROOT / "containers", root / "containers")
    source = tmp_path / "gdb-13.1"
    safe_extract(GDB_SOURCE, source, strip_components=1)
    settings = podman_settings(root, tmp_path, gdb_variant="13.1", overrides={"gdb": source})
    recipes = load_recipes(root / "recipes", root / "patches", settings.variant_values)
    build.build_recipe("gdb", recipes, settings, push=False)
    gdb = settings.prefix / "bin" / "x86_64-hermit-gdb"
    assert gdb.is_file()

    elf64, elf32 = build_longmode_kernel(tmp_path / "kernel")
    work = tmp_path / "session"
    work.mkdir()
    prefix = container.exec_prefix("toolchain", settings, mounts=[(settings.prefix, False),
                                                                 (elf64.parent, False), (work, True)],
                                   cwd=work)
    qemu = ["qemu-system-x86_64", "-kernel", str(elf32), "-display", "none", "-m", "64",
            "-serial", f"file:{work / 'serial.log'}", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-gdb", "tcp:127.0.0.1:1234", "-S"]
    argv = debug.gdb_argv(str(gdb), elf64, breaks=["report"], commands=["bt", "up", "print answer"],
                          batch=True)
    done = debug.session(qemu, argv, boot_log=work / "boot.log", prefix=prefix, timeout=300)
    assert done.returncode == 0, done.output
    assert "Breakpoint 1, report (value=42)" in done.output and "compute (x=7)" in done.output
    assert "$1 = 42" in done.output
