"""The doit wiring: `doit list` is cheap and offline, tasks are documented, errors are clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _doit(args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        # no git, no podman, no docker, no network helpers on PATH: task creators must not need them
        "PATH": str(tmp_path / "empty-bin"),
        "HOME": str(tmp_path / "home"),
        "HERMITBUILD_BUILD_DIR": str(tmp_path / "build"),
        "HERMITBUILD_PREFIX": str(tmp_path / "prefix"),
        "HERMITBUILD_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    (tmp_path / "empty-bin").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_doit_list_is_offline_and_documented(tmp_path):
    done = _doit(["list", "--all"], tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for task in ("toolchain", "download", "prepare", "build", "base_image", "containers", "syscall",
                 "cache", "boot", "smoke", "image"):
        assert any(line.split()[0] == task for line in out.splitlines() if line.strip()), task
    for recipe in ("binutils", "gcc-stage1", "hermit-bootstrap", "newlib", "pthread-embedded", "gcc",
                   "hermit", "autoconf", "automake", "gdb"):
        assert f"build:{recipe}" in out
    # every listed task has a docstring
    for line in out.splitlines():
        if line.strip():
            assert len(line.split(None, 1)) == 2, f"task without documentation: {line!r}"
    # doit's own database lives under the build directory
    assert any(p.name.startswith("doit.db") for p in (tmp_path / "build").iterdir())
    assert not (ROOT / ".doit.db").exists()


def test_bad_settings_give_a_clean_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prefix: /opt/hermit\njobs: lots\n")
    done = _doit(["list"], tmp_path, {"HERMITBUILD_SETTINGS": str(bad)})
    assert done.returncode != 0
    assert f"{bad}:2" in done.stderr and "jobs" in done.stderr
    assert "Traceback" not in done.stderr


def test_skip_leaves_recipes_out_of_the_toolchain(tmp_path):
    """`skip: [gdb]` (here through HERMITBUILD_SKIP): `doit toolchain` no longer depends on
    build:gdb, which still exists for `doit build:gdb`."""
    def toolchain_deps(extra_env: dict[str, str]) -> set[str]:
        done = _doit(["info", "toolchain"], tmp_path, extra_env)  # exit 1: not up to date
        assert "task_dep" in done.stdout and "Traceback" not in done.stderr, done.stderr
        return {line.strip(" -") for line in done.stdout.splitlines() if "build:" in line}

    all_deps = toolchain_deps({})
    assert "build:gdb" in all_deps and "build:autoconf" in all_deps
    kept = toolchain_deps({"HERMITBUILD_SKIP": "gdb,automake autoconf"})
    assert kept == all_deps - {"build:gdb", "build:automake", "build:autoconf"}
    listed = _doit(["list", "--all"], tmp_path, {"HERMITBUILD_SKIP": "gdb"})
    assert "build:gdb" in listed.stdout


def test_skip_errors_name_the_recipe_and_the_fix(tmp_path):
    unknown = _doit(["list"], tmp_path, {"HERMITBUILD_SKIP": "gbd"})
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "'gbd'" in unknown.stderr and "gdb" in unknown.stderr and "skip" in unknown.stderr
    # automake depends on autoconf: skipping autoconf alone would build it anyway
    needed = _doit(["list"], tmp_path, {"HERMITBUILD_SKIP": "autoconf"})
    assert needed.returncode != 0
    assert "'autoconf' cannot be skipped: automake" in needed.stderr
    assert "skip automake as well" in needed.stderr


def test_boot_smoke_and_debug_bring_the_toolchain_up_to_date_first(tmp_path):
    """`doit syscall add X && doit boot test.c` is the whole loop: boot, smoke and debug depend
    on the same build:* tasks as `doit toolchain` (not on toolchain itself: no summary, no push)."""
    def deps(task: str) -> set[str]:
        done = _doit(["info", task], tmp_path, {"HERMITBUILD_SKIP": "gdb"})
        assert "Traceback" not in done.stderr, done.stderr
        return {line.strip(" -") for line in done.stdout.splitlines() if "build:" in line}

    toolchain = deps("toolchain")
    assert "build:newlib" in toolchain and "build:gdb" not in toolchain
    for task in ("boot", "smoke", "debug"):
        assert deps(task) == toolchain, task


def test_sbom_and_toolchain_image_take_their_options_first(tmp_path):
    """`doit sbom --output FILE` and `doit toolchain_image --push URL`: doit parses options that
    come before any positional argument, so the tasks declare them (a clean error, not
    "option --output not recognized")."""
    out = tmp_path / "sbom.json"
    done = _doit(["sbom", "--output", str(out)], tmp_path, {"HERMITBUILD_PREFIX": str(tmp_path / "empty")})
    text = done.stdout + done.stderr
    assert "not recognized" not in text and "Traceback" not in text
    assert "no toolchain recipe is installed" in text and "doit toolchain" in text and not out.exists()
    done = _doit(["toolchain_image", "--push", "oci://ghcr.io/o/t"], tmp_path,
                 {"HERMITBUILD_PREFIX": str(tmp_path / "empty")})
    text = done.stdout + done.stderr
    assert "not recognized" not in text and "no toolchain recipe is installed" in text
