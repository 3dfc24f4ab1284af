"""`doit syscall ...` end to end on the fixture trees with the real automake-1.11 and git:
add (catalog and signature), list, check, apply, remove, export, and the error paths
(nothing written when anything fails)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hermitbuild.errors import CommandError
from hermitbuild.syscalls import cli_main, load_table

from helpers_syscalls import (GOLDEN, HERMIT_REL, REPO, make_settings,  # noqa: F401
                              prepared_template, snapshot, trees)

pytestmark = pytest.mark.skipif(shutil.which("automake-1.11") is None or shutil.which("git") is None,
                                reason="needs automake-1.11 and git")


@pytest.fixture
def project(tmp_path: Path, trees: tuple[Path, Path]):
    root = tmp_path / "project"
    (root / "syscalls").mkdir(parents=True)
    shutil.copy(REPO / "syscalls" / "table.yaml", root / "syscalls" / "table.yaml")
    settings = make_settings(root)

    def run(*argv: str, with_trees: bool = True, automake=None) -> int:  # noqa: ANN001
        return cli_main(list(argv), settings, trees=(lambda: trees) if with_trees else (lambda: (None, None)),
                        automake=automake)
    run.root = root  # type: ignore[attr-defined]
    run.table = root / "syscalls" / "table.yaml"  # type: ignore[attr-defined]
    run.trees = trees  # type: ignore[attr-defined]
    return run


def test_guide_examples_verbatim(project, capsys) -> None:  # noqa: ANN001
    kernel, newlib = project.trees
    pristine = snapshot(kernel, newlib)
    original = project.table.read_text()
    assert project("add", "my_syscall", "int my_syscall(int x)", "--body", "return x + 42;") == 0
    only_my = project.table.read_text()
    assert project("add", "rename") == 0  # catalog: nothing more needed
    table = load_table(project.table)
    assert table.names() == ["my_syscall", "rename"]
    assert project.table.read_text().startswith(original.split("syscalls: []")[0]), "comments kept"
    # the same bytes as the golden files made from syscalls/examples.yaml
    for path in (p for p in GOLDEN.rglob("*") if p.is_file()):
        rel = path.relative_to(GOLDEN)
        tree = kernel if rel.parts[0] == "hermit" else newlib
        assert (tree / Path(*rel.parts[1:])).read_text() == path.read_text(), rel
    assert "lib_a-rename.$(OBJEXT)" in (newlib / HERMIT_REL / "Makefile.in").read_text()

    capsys.readouterr()
    assert project("list") == 0
    out = capsys.readouterr().out
    assert "my_syscall" in out and "rename" in out and "MISSING" not in out
    assert sum(line.startswith("rename ") for line in out.splitlines()) == 1
    assert project("check") == 0

    # drift: a generated file deleted by hand, then a stale Makefile.in
    (newlib / HERMIT_REL / "rename.c").unlink()
    capsys.readouterr()
    assert project("check") == 1
    assert "rename.c" in capsys.readouterr().out
    assert project("apply") == 0 and project("check") == 0
    mfin = newlib / HERMIT_REL / "Makefile.in"
    mfin.write_bytes(pristine[str(mfin)])
    capsys.readouterr()
    assert project("check") == 1
    assert "stale" in capsys.readouterr().out
    assert project("apply") == 0 and project("check") == 0  # apply re-runs automake
    assert "lib_a-rename.$(OBJEXT)" in mfin.read_text()
    # removing everything gives back the pristine trees and the original table
    assert project("remove", "rename") == 0
    assert not (newlib / HERMIT_REL / "rename.c").exists()
    assert project.table.read_text() == only_my  # the last block cut cleanly, newline kept
    assert project("remove", "my_syscall") == 0
    assert project.table.read_text() == original
    assert snapshot(kernel, newlib) == pristine


def test_errors_write_nothing(project, capsys) -> None:  # noqa: ANN001
    kernel, newlib = project.trees
    before = snapshot(kernel, newlib, project.table.parent)
    assert project("add", "close") == 1  # the kernel has sys_close
    err = capsys.readouterr().err
    assert "sys_close" in err and "kernel/syscall.c" in err and "refused" in err
    assert project("add", "frobnicate") == 1  # not in the catalog, no signature
    assert "signature" in capsys.readouterr().err
    assert project("add", "renam") == 1
    assert "did you mean rename" in capsys.readouterr().err
    assert project("add", "foo", "int bar(int x)") == 1
    assert project("add", "foo", "int foo(mystery_t x)") == 1
    assert "unknown type" in capsys.readouterr().err
    assert project("add", "unlink", "int unlink(const char *path)") == 1  # newlib has unlink.c
    assert project("remove", "rename") == 1
    assert project("frobnicate") == 2
    assert project("add") == 2

    def broken(directory: Path) -> None:
        raise CommandError(["automake"], 1, cwd=directory)

    assert snapshot(kernel, newlib, project.table.parent) == before
    # a new call is edited into Makefile.in without automake; removing the last call needs
    # automake (the plain lib_a_SOURCES comes back): when it fails, nothing is written
    assert project("add", "rename", automake=broken) == 0
    after_add = snapshot(kernel, newlib, project.table.parent)
    assert after_add != before
    assert project("remove", "rename", automake=broken) == 1
    assert snapshot(kernel, newlib, project.table.parent) == after_add


def test_without_prepared_trees_only_the_table_changes(project, capsys) -> None:  # noqa: ANN001
    assert project("add", "mkdir", with_trees=False) == 0
    assert "not prepared" in capsys.readouterr().out
    assert load_table(project.table).names() == ["mkdir"]
    assert project("check", with_trees=False) == 0
    assert project("add", "mkdir", with_trees=False) == 1  # already there
    assert project("remove", "mkdir", with_trees=False) == 0
    assert load_table(project.table).names() == []


@pytest.mark.skipif(shutil.which("automake-1.11") is None, reason="needs automake-1.11")
def test_export_patches_apply_to_pristine(project, prepared_template: Path, tmp_path: Path,  # noqa: ANN001
                                          capsys) -> None:
    kernel, newlib = project.trees
    assert project("add", "my_syscall", "int my_syscall(int x)", "--body", "return x + 42;") == 0
    assert project("add", "rename") == 0
    out = tmp_path / "patches"
    assert project("export", "--out", str(out)) == 0
    kpatch = sorted((out / "libhermit").glob("*.patch"))
    npatch = sorted((out / "newlib").glob("*.patch"))
    assert len(kpatch) == 1 and len(npatch) == 1
    text = npatch[0].read_text()
    assert text.startswith("From ") and "Subject: [PATCH] hermit: add system calls my_syscall, rename" in text
    assert "newlib/libc/sys/hermit/rename.c" in text
    assert "newlib/libc/sys/hermit/Makefile.in" in text and "+\tlib_a-my_syscall.$(OBJEXT)" in text
    assert "regenerated with automake 1.11.6" in text
    # same table, same bytes
    first = kpatch[0].read_bytes(), npatch[0].read_bytes()
    assert project("export", "--out", str(out)) == 0
    assert (kpatch[0].read_bytes(), npatch[0].read_bytes()) == first
    # they apply with `git am` on pristine copies (newlib: with its automake-made Makefile.in),
    # giving the generated files, Makefile.in included
    for name, patch, generated in (("hermit", kpatch[0], kernel), ("newlib", npatch[0], newlib)):
        repo = tmp_path / f"pristine-{name}"
        shutil.copytree(prepared_template / name, repo)
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "pristine"],
                     ["git", "am", "-q", str(patch)]):
            proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        for path in (p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts):
            rel = path.relative_to(repo)
            assert path.read_bytes() == (generated / rel).read_bytes(), rel


def test_export_from_an_incomplete_newlib_tree_is_a_clear_error(project, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    kernel, newlib = project.trees
    assert project("add", "rename") == 0
    (newlib / "newlib" / "acinclude.m4").unlink()
    assert project("export", "--out", str(tmp_path / "p")) == 1
    err = capsys.readouterr().err
    assert "acinclude.m4 missing" in err and "doit prepare:newlib" in err and "Traceback" not in err
