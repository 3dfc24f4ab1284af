"""Shared fixtures for the syscall tests (pytest only reads conftest.py, so the test
modules import these names).

- ``prepared_template``: the hand-written fixture trees (tests/fixtures/trees/) turned
  into "prepared" trees once per session: newlib's libc/sys/hermit gets aclocal.m4 and
  Makefile.in from the real aclocal-1.11/automake-1.11, as a real checkout has them.
- ``trees``: a fresh copy of that per test: (kernel tree, newlib tree).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hermitbuild.settings import Settings

HERE = Path(__file__).resolve().parent
FIXTURE_TREES = HERE / "fixtures" / "trees"
GOLDEN = HERE / "fixtures" / "syscalls_golden"
REPO = HERE.parent
EXAMPLES = REPO / "syscalls" / "examples.yaml"
AUTOTOOLS_ENV = {"AUTOCONF": "autoconf2.64", "AUTOM4TE": "autom4te2.64"}
HERMIT_REL = Path("newlib/libc/sys/hermit")


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in AUTOTOOLS_ENV.items():
        if shutil.which(value):
            env[key] = value
    return env


def prepare_fixture(dest: Path) -> tuple[Path, Path]:
    shutil.copytree(FIXTURE_TREES / "hermit", dest / "hermit")
    shutil.copytree(FIXTURE_TREES / "newlib", dest / "newlib")
    hermit = dest / "newlib" / HERMIT_REL
    env = tool_env()
    subprocess.run(["aclocal-1.11", "-I", "../../.."], cwd=hermit, env=env, check=True,
                   capture_output=True)
    subprocess.run(["automake-1.11", "--cygnus", "--add-missing", "--copy", "Makefile"], cwd=hermit,
                   env=env, check=True, capture_output=True)
    shutil.rmtree(hermit / "autom4te.cache", ignore_errors=True)
    return dest / "hermit", dest / "newlib"


_TEMPLATE: list[Path] = []  # one per session, shared by every test module that imports the fixture


@pytest.fixture(scope="session")
def prepared_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _TEMPLATE or not _TEMPLATE[0].exists():
        base = tmp_path_factory.mktemp("syscall-trees")
        prepare_fixture(base)
        _TEMPLATE[:] = [base]
    return _TEMPLATE[0]


@pytest.fixture
def trees(prepared_template: Path, tmp_path: Path) -> tuple[Path, Path]:
    dest = tmp_path / "trees"
    shutil.copytree(prepared_template, dest)
    return dest / "hermit", dest / "newlib"


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots (path -> bytes)."""
    out: dict[str, bytes] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out[str(path)] = path.read_bytes()
    return out


def make_settings(root: Path) -> Settings:
    return Settings(root=root, build_dir=root / "build")


def newlib_cc_argv(newlib_tree: Path) -> list[str]:
    """gcc flags compiling libc/sys/hermit code against Debian's real newlib headers,
    with the defines newlib's configure.host sets for hermit."""
    gcc_inc = subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                             check=True).stdout.strip()
    nroot = newlib_tree / "newlib"
    return ["gcc", "-std=gnu99", "-nostdinc", "-isystem", "/usr/include/newlib", "-isystem", gcc_inc,
            # the tree's libc/include only for the new headers (its stand-ins come after the real ones)
            "-idirafter", str(nroot / "libc" / "include"),
            "-iquote", str(nroot / "libc" / "sys" / "hermit"),
            "-DREENTRANT_SYSCALLS_PROVIDED", "-D__DYNAMIC_REENT__", "-DSIGNAL_PROVIDED",
            "-Wall", "-Wextra", "-Werror", "-c"]


def kernel_cc_argv(kernel_tree: Path) -> list[str]:
    return ["gcc", "-std=gnu99", "-ffreestanding", "-nostdinc", "-D__KERNEL__",
            "-I", str(kernel_tree / "include"), "-I", str(kernel_tree / "arch" / "x86_64" / "include"),
            "-Wall", "-Wextra", "-Werror", "-c"]
