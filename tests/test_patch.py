"""hermitbuild.patch: ordered, all-or-nothing patch series (real git-made and diff-made patches)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hermitbuild.errors import PatchError
from hermitbuild.patch import apply_series
from hermitbuild.recipe import PatchSpec

from helpers_prepare import HEADER, git, lines, make_patch, snapshot, write_tree


def spec(path: Path, number: int | None = None, strip: int = 1) -> PatchSpec:
    return PatchSpec(path=path, number=number if number is not None else int(path.name[:4]),
                     strip=strip)


def test_series_applies_in_numbered_order(tmp_path: Path) -> None:
    base = {"src/a.c": lines(20)}
    step1 = {"src/a.c": lines(20).replace("line 5\n", "line 5\nadded by 0001\n")}
    step2 = {"src/a.c": step1["src/a.c"].replace("added by 0001\n", "changed by 0002\n")}
    p1 = make_patch(base, step1, tmp_path, tmp_path / "p" / "0001-first.patch")
    p2 = make_patch(step1, step2, tmp_path, tmp_path / "p" / "0002-second.patch")
    tree = tmp_path / "tree"
    write_tree(tree, base)
    # given out of order: numbers decide
    apply_series(tree, [spec(p2), spec(p1)], recipe="demo")
    assert (tree / "src/a.c").read_text() == step2["src/a.c"]

    # 0002 alone does not apply: it depends on 0001
    tree2 = tmp_path / "tree2"
    write_tree(tree2, base)
    with pytest.raises(PatchError) as err:
        apply_series(tree2, [spec(p2)], recipe="demo")
    assert err.value.target == "src/a.c" and err.value.hunk == 1
    assert (tree2 / "src/a.c").read_text() == base["src/a.c"]


def test_failure_leaves_tree_byte_and_mtime_identical(tmp_path: Path) -> None:
    base = {"a.c": lines(10), "dir/b.c": lines(60, "b"), "dir/gone.txt": "bye\n"}
    good = {"a.c": lines(10).replace("line 3", "LINE 3"), "dir/b.c": base["dir/b.c"],
            "new/created.txt": "hello\n"}  # also deletes dir/gone.txt, creates a dir
    p1 = make_patch(base, good, tmp_path, tmp_path / "p" / "0001-good.patch")
    # 0002 has two hunks in dir/b.c: the first fits, the second does not
    wrong_base = {"dir/b.c": lines(60, "b").replace("b 50\n", "something else\n")}
    wrong_after = {"dir/b.c": wrong_base["dir/b.c"].replace("b 2\n", "B 2\n")
                   .replace("something else\n", "SOMETHING\n")}
    p2 = make_patch(wrong_base, wrong_after, tmp_path, tmp_path / "p" / "0002-bad.patch")
    tree = tmp_path / "tree"
    write_tree(tree, base)
    os.utime(tree / "a.c", ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(tree)
    with pytest.raises(PatchError) as err:
        apply_series(tree, [spec(p1), spec(p2)], recipe="demo")
    assert snapshot(tree) == before
    e = err.value
    assert e.patch == str(p2) and e.target == "dir/b.c" and e.hunk == 2 and e.recipe == "demo"
    text = str(e)
    assert "0002-bad.patch" in text and "dir/b.c" in text and "hunk #2" in text
    assert "fix:" in text
    assert not list(tmp_path.glob("tree/**/*.hb-*")), "no temp files left in the tree"


def test_create_delete_rename_and_mode_with_git_patch(tmp_path: Path) -> None:
    base = {"keep.c": lines(5), "old/name.c": lines(30, "n"), "delete-me.txt": "x\ny\n",
            "script.sh": "#!/bin/sh\necho hi\n"}
    after = {"keep.c": lines(5) + "appended\n",
             "new/name.c": lines(30, "n").replace("n 15", "N 15"),
             "brand/new/file.txt": "fresh\n", "script.sh": "#!/bin/sh\necho hi\n"}
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    write_tree(repo, base)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    shutil.rmtree(repo / "old")
    (repo / "delete-me.txt").unlink()
    write_tree(repo, after)
    (repo / "script.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")
    patch = tmp_path / "0001-all-kinds.patch"
    patch.write_text(HEADER + git(repo, "format-patch", "-M", "--stdout", "HEAD~1"))
    assert "rename from old/name.c" in patch.read_text()

    tree = tmp_path / "tree"
    write_tree(tree, base)
    apply_series(tree, [spec(patch)])
    for rel, data in after.items():
        assert (tree / rel).read_text() == data, rel
    assert not (tree / "delete-me.txt").exists()
    assert not (tree / "old/name.c").exists()
    assert os.access(tree / "script.sh", os.X_OK)


def test_plain_diff_create_delete_and_no_newline(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_tree(a, {"x.txt": "one\ntwo", "gone.txt": "gone\n"})
    write_tree(b, {"x.txt": "one\nTWO", "made.txt": "made\nno newline"})
    diff = subprocess.run(["diff", "-ruN", "a", "b"], cwd=tmp_path, capture_output=True).stdout
    patch = tmp_path / "0001-plain.patch"
    patch.write_bytes(HEADER.encode() + diff)
    tree = tmp_path / "tree"
    shutil.copytree(a, tree)
    apply_series(tree, [spec(patch)])
    assert (tree / "x.txt").read_bytes() == b"one\nTWO"
    assert (tree / "made.txt").read_bytes() == b"made\nno newline"
    assert not (tree / "gone.txt").exists()


def test_hunk_found_at_offset(tmp_path: Path) -> None:
    base = {"f.c": lines(40)}
    after = {"f.c": lines(40).replace("line 30\n", "line 30 patched\n")}
    patch = make_patch(base, after, tmp_path, tmp_path / "0001-offset.patch")
    tree = tmp_path / "tree"
    write_tree(tree, {"f.c": "extra 1\nextra 2\n" + lines(40)})
    apply_series(tree, [spec(patch)])
    assert (tree / "f.c").read_text() == "extra 1\nextra 2\n" + after["f.c"]


def test_already_applied_is_an_error(tmp_path: Path) -> None:
    base = {"f.c": lines(10)}
    after = {"f.c": lines(10).replace("line 4", "line four")}
    patch = make_patch(base, after, tmp_path, tmp_path / "0001-x.patch")
    tree = tmp_path / "tree"
    write_tree(tree, after)
    before = snapshot(tree)
    with pytest.raises(PatchError, match="already present") as err:
        apply_series(tree, [spec(patch)])
    assert err.value.hunk == 1 and err.value.target == "f.c"
    assert snapshot(tree) == before


def test_create_existing_file_is_refused(tmp_path: Path) -> None:
    patch = make_patch({}, {"n.txt": "new\n"}, tmp_path, tmp_path / "0001-create.patch")
    tree = tmp_path / "tree"
    write_tree(tree, {"n.txt": "already here\n"})
    before = snapshot(tree)
    with pytest.raises(PatchError, match="already exists"):
        apply_series(tree, [spec(patch)])
    assert snapshot(tree) == before


@pytest.mark.parametrize("name", ["a/../outside.txt", "a/../../etc/passwd", "a/sub/../../../x"])
def test_path_outside_tree_is_refused(tmp_path: Path, name: str) -> None:
    patch = tmp_path / "0001-evil.patch"
    target = name.replace("a/", "b/", 1)
    patch.write_text(HEADER + f"--- {name}\n+++ {target}\n@@ -1 +1 @@\n-x\n+y\n")
    tree = tmp_path / "inner" / "tree"
    write_tree(tree, {"outside.txt": "x\n"})
    write_tree(tmp_path / "inner", {"outside.txt": "x\n"})
    before = snapshot(tmp_path)
    with pytest.raises(PatchError, match="outside the tree"):
        apply_series(tree, [spec(patch)])
    assert snapshot(tmp_path) == before


def test_absolute_path_and_symlink_escape_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"f.txt": "x\n"})
    tree = tmp_path / "tree"
    write_tree(tree, {"f.txt": "x\n"})
    (tree / "link").symlink_to(outside)
    p_abs = tmp_path / "0001-abs.patch"
    p_abs.write_text(HEADER + f"--- {outside}/f.txt\n+++ {outside}/f.txt\n@@ -1 +1 @@\n-x\n+y\n")
    with pytest.raises(PatchError, match="absolute path"):
        apply_series(tree, [spec(p_abs, strip=0)])
    p_link = tmp_path / "0001-link.patch"
    p_link.write_text(HEADER + "--- a/link/f.txt\n+++ b/link/f.txt\n@@ -1 +1 @@\n-x\n+y\n")
    with pytest.raises(PatchError, match="outside"):
        apply_series(tree, [spec(p_link)])
    assert (outside / "f.txt").read_text() == "x\n"


def test_malformed_patch_names_the_patch(tmp_path: Path) -> None:
    patch = tmp_path / "0003-broken.patch"
    patch.write_text(HEADER + "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n-x\n+y\n")
    tree = tmp_path / "tree"
    write_tree(tree, {"f.c": "x\n"})
    before = snapshot(tree)
    with pytest.raises(PatchError) as err:
        apply_series(tree, [spec(patch)], recipe="r")
    assert "0003-broken.patch" in str(err.value)
    assert snapshot(tree) == before

    empty = tmp_path / "0004-empty.patch"
    empty.write_text(HEADER)
    with pytest.raises(PatchError, match="no file changes"):
        apply_series(tree, [spec(empty)])


def test_missing_target_file(tmp_path: Path) -> None:
    patch = make_patch({"f.c": "x\n"}, {"f.c": "y\n"}, tmp_path, tmp_path / "0001-m.patch")
    tree = tmp_path / "tree"
    write_tree(tree, {"other.c": "x\n"})
    with pytest.raises(PatchError, match="does not exist") as err:
        apply_series(tree, [spec(patch)])
    assert err.value.target == "f.c"


def test_strip_zero_and_unchanged_files_untouched(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_tree(tree, {"f.c": "x\n", "g.c": "g\n"})
    os.utime(tree / "g.c", ns=(5, 5))
    patch = tmp_path / "0001-p0.patch"
    # f.c changes, g.c is changed and changed back by a second hunk set -> untouched
    patch.write_text(HEADER + "--- f.c\n+++ f.c\n@@ -1 +1 @@\n-x\n+y\n")
    p2 = tmp_path / "0002-g.patch"
    p2.write_text(HEADER + "--- g.c\n+++ g.c\n@@ -1 +1 @@\n-g\n+G\n")
    p3 = tmp_path / "0003-g-back.patch"
    p3.write_text(HEADER + "--- g.c\n+++ g.c\n@@ -1 +1 @@\n-G\n+g\n")
    apply_series(tree, [spec(patch, strip=0), spec(p2, strip=0), spec(p3, strip=0)])
    assert (tree / "f.c").read_text() == "y\n"
    assert (tree / "g.c").stat().st_mtime_ns == 5


@pytest.mark.parametrize("seed", range(12))
def test_random_edits_match_git(tmp_path: Path, seed: int) -> None:
    """Random multi-hunk edits (incl. missing final newlines, '+++'-looking lines, CRLF) made
    by real git apply exactly like git made them."""
    import random
    rnd = random.Random(seed)
    before: dict[str, str | bytes] = {}
    after: dict[str, str | bytes] = {}
    for n in range(rnd.randint(1, 4)):
        body = [f"{rnd.choice(['x', 'y', '++ z', '-- w', ''])} {i}" for i in range(rnd.randint(0, 80))]
        new = list(body)
        for _ in range(rnd.randint(1, 6)):
            pos = rnd.randint(0, len(new))
            op = rnd.choice(["ins", "del", "chg"])
            if op == "ins" or not new:
                new.insert(pos, f"++ inserted {rnd.random():.6f}")
            elif op == "del":
                del new[min(pos, len(new) - 1)]
            else:
                new[min(pos, len(new) - 1)] = f"changed {rnd.random():.6f}"
        eol = "\r\n" if n == 3 else "\n"
        old_text = eol.join(body) + (eol if rnd.random() < 0.7 else "")
        new_text = eol.join(new) + (eol if rnd.random() < 0.7 else "")
        before[f"d{n}/f{n}.txt"] = old_text.encode()
        after[f"d{n}/f{n}.txt"] = new_text.encode()
    if rnd.random() < 0.5:
        after["added.txt"] = "a\nb" if rnd.random() < 0.5 else "a\nb\n"
    patch = make_patch(before, after, tmp_path, tmp_path / "0001-random.patch")
    tree = tmp_path / "tree"
    write_tree(tree, before)
    if "diff --git" not in patch.read_text():
        return  # random edits cancelled out: nothing to apply
    apply_series(tree, [spec(patch)])
    for rel, data in after.items():
        want = data.encode() if isinstance(data, str) else data
        assert (tree / rel).read_bytes() == want, rel


def test_file_where_a_directory_is_needed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write_tree(tree, {"a": "i am a file\n"})
    patch = make_patch({}, {"a/b.txt": "x\n"}, tmp_path, tmp_path / "0001-dir.patch")
    before = snapshot(tree)
    with pytest.raises(PatchError, match="to be a directory") as err:
        apply_series(tree, [spec(patch)])
    assert "0001-dir.patch" in str(err.value)
    assert snapshot(tree) == before


def test_failure_while_writing_into_the_tree_rolls_back(tmp_path: Path, monkeypatch) -> None:
    """Disk trouble in the middle of the final copy-back: files already written are restored."""
    import hermitbuild.patch as patch_mod
    base = {"a.c": lines(5), "b.c": lines(5, "b"), "c.c": lines(5, "c")}
    after = {"a.c": lines(5) + "x\n", "b.c": lines(5, "b") + "y\n", "c.c": lines(5, "c") + "z\n",
             "new/d.c": "d\n"}
    patch = make_patch(base, after, tmp_path, tmp_path / "0001-three.patch")
    tree = tmp_path / "tree"
    write_tree(tree, base)
    before = snapshot(tree)
    real_replace = os.replace
    into_tree: list[str] = []

    def flaky_replace(src, dst, *a, **kw):
        if str(dst).startswith(str(tree)) and not str(src).endswith(".hb-restore"):
            into_tree.append(str(dst))
            if len(into_tree) == 3:
                raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(patch_mod.os, "replace", flaky_replace)
    with pytest.raises(PatchError, match="No space left") as err:
        apply_series(tree, [spec(patch)])
    assert "restored" in str(err.value)
    assert len(into_tree) == 3
    assert snapshot(tree) == before
