"""fsutil.discard: a tree removed without waiting, nothing left once waited for."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from hermitbuild import fsutil
from hermitbuild.fsutil import discard, wait_discards


def _tree(root: Path) -> Path:
    (root / "stage" / "lib" / "ro").mkdir(parents=True)
    for i in range(200):
        (root / "stage" / "lib" / f"f{i}.o").write_bytes(b"x" * i)
    (root / "stage" / "lib" / "ro" / "kept.h").write_text("int x;\n")
    (root / "stage" / "lib" / "ro").chmod(0o555)  # read-only inside: rmtree's rule applies
    return root / "stage"


def test_the_path_is_free_at_once_and_gone_after_the_wait(tmp_path: Path) -> None:
    stage = _tree(tmp_path)
    discard(stage)
    assert not stage.exists()
    stage.mkdir()  # the next step's fresh stage, while the old one is deleted
    (stage / "new").write_text("new\n")
    wait_discards()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    assert [p.name for p in stage.iterdir()] == ["new"]


def test_leftovers_of_a_killed_run_go_too(tmp_path: Path) -> None:
    left = tmp_path / ".stage.discard-dead0000"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "f").write_text("left behind\n")
    discard(tmp_path / "stage")  # nothing to discard but the leftover
    wait_discards()
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_is_removed_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    discard(link)
    wait_discards()
    assert not os.path.lexists(link) and (target / "keep").read_text() == "keep\n"


def test_a_tree_being_deleted_is_not_handed_to_a_second_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reset discards the build directory, then the step's fresh start discards the same
    path again while the first thread still deletes: each hidden sibling is deleted once."""
    release = threading.Event()
    deleted: list[str] = []
    real = fsutil.rmtree

    def slow_rmtree(path: Path) -> None:
        deleted.append(path.name)
        release.wait(10)
        real(path)

    monkeypatch.setattr(fsutil, "rmtree", slow_rmtree)
    build = tmp_path / "build"
    (build / "obj").mkdir(parents=True)
    discard(build)  # the first thread now holds .build.discard-X, blocked
    build.mkdir()
    (build / "again").write_text("x\n")
    discard(build)  # a second tree: its own thread, not a second one for the first
    release.set()
    wait_discards()
    assert len(deleted) == 2 and len(set(deleted)) == 2, deleted
    assert list(tmp_path.iterdir()) == []


def test_a_stat_memo_reads_a_file_again_only_when_it_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []

    def compute(path: Path) -> str:
        reads.append(path.name)
        return path.read_text()

    memo: fsutil.StatMemo[str] = fsutil.StatMemo(compute)
    f = tmp_path / "main.c"
    f.write_text("int sys_a(void);\n")
    # just written: racily clean, so read every time (an edit in the same clock tick keeps the stat)
    assert memo.get(f) == memo.get(f) == "int sys_a(void);\n" and len(reads) == 2
    st = os.stat(f)
    f.write_text("int sys_b(void);\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime: ctime is new
    assert memo.get(f) == "int sys_b(void);\n"
    monkeypatch.setattr(fsutil, "RACY_SECONDS", 0.0)  # as if the file were older than that
    reads.clear()
    assert memo.get(f) == memo.get(f) == "int sys_b(void);\n" and reads == ["main.c"]
    f.write_text("int sys_cc(void);\n")  # another size
    assert memo.get(f) == "int sys_cc(void);\n" and len(reads) == 2
    g = tmp_path / "other.c"
    g.write_text("int sys_cc(void);\n")
    os.replace(g, f)  # the same size and content, another inode
    assert memo.get(f) == "int sys_cc(void);\n" and len(reads) == 3
