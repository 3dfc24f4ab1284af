"""The override digest's two layers: the `find` listing fingerprint and the per-file cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hermitbuild import treedigest
from hermitbuild.errors import CommandError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "gcc" / "config").mkdir(parents=True)
    (root / "gcc" / "config" / "hermit.h").write_text("#define HERMIT 1\n")
    (root / "configure").write_text("#!/bin/sh\n")
    (root / "configure").chmod(0o755)
    (root / "link").symlink_to("configure")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / os.fsdecode(b"caf\xe9 \nname")).write_text("latin-1 name with a newline\n")
    return root


@pytest.fixture
def walks(monkeypatch) -> list[Path]:
    """Every slow (Python) walk; the racy window closed so just-written files are kept."""
    monkeypatch.setattr(treedigest, "_RACY_NS", 0)
    calls: list[Path] = []
    real = treedigest._walk_digest
    monkeypatch.setattr(treedigest, "_walk_digest", lambda root, cache: calls.append(root) or real(root, cache))
    return calls


def test_the_listing_fingerprint_answers_without_a_walk(tree: Path, tmp_path: Path, walks) -> None:
    cache = tmp_path / "stamps" / "x.override-cache.json"
    plain = treedigest.dir_digest(tree)
    assert walks == [tree]
    first = treedigest.dir_digest(tree, cache)
    assert first == plain and len(walks) == 2
    assert (tmp_path / "stamps" / "x.override-cache.json.fingerprint").is_file()
    assert [treedigest.dir_digest(tree, cache) for _ in range(3)] == [first] * 3
    assert len(walks) == 2, "an unchanged tree was walked again"


def test_edits_reach_the_digest_through_the_fingerprint(tree: Path, tmp_path: Path, walks) -> None:
    cache = tmp_path / "cache.json"
    seen = {treedigest.dir_digest(tree, cache)}
    f = tree / "gcc" / "config" / "hermit.h"
    st = f.stat()
    time.sleep(0.05)  # let the coarse file-system clock tick
    f.write_text("#define HERMIT 2\n")  # same size, and the mtime put back: the ctime moves
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))

    def changed() -> None:
        digest = treedigest.dir_digest(tree, cache)
        assert digest not in seen and digest == treedigest.dir_digest(tree)
        seen.add(digest)

    changed()
    f.chmod(0o755)
    changed()
    (tree / "link").unlink()
    (tree / "link").symlink_to("gcc")
    changed()
    (tree / "gcc" / "new-dir").mkdir()
    changed()
    os.rename(tree / os.fsdecode(b"caf\xe9 \nname"), tree / "renamed")
    changed()
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/other\n")  # .git does not count
    assert treedigest.dir_digest(tree, cache) in seen


def test_a_just_changed_tree_keeps_no_fingerprint(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    treedigest.dir_digest(tree, cache)  # the files were written a moment ago: racy
    assert not (tmp_path / "cache.json.fingerprint").exists()
    assert treedigest.listing_fingerprint(tree).racy is True


def test_without_find_the_walk_answers(tree: Path, tmp_path: Path, walks, monkeypatch) -> None:
    def no_find(argv, **kw):  # noqa: ANN001, ANN003
        raise CommandError(list(argv), None, why="program not found: find")

    expected = treedigest.dir_digest(tree)
    monkeypatch.setattr(treedigest, "output_bytes", no_find)
    assert treedigest.listing_fingerprint(tree) is None
    assert treedigest.dir_digest(tree, tmp_path / "cache.json") == expected
    assert not (tmp_path / "cache.json.fingerprint").exists()


def test_a_fingerprint_of_another_root_or_a_damaged_file_is_not_used(tree: Path, tmp_path: Path, walks) -> None:
    cache = tmp_path / "cache.json"
    treedigest.dir_digest(tree, cache)
    fp = tmp_path / "cache.json.fingerprint"
    fp.write_text("{not json")
    assert treedigest.dir_digest(tree, cache) == treedigest.dir_digest(tree)
    other = tmp_path / "other"
    os.rename(tree, other)  # same inodes, same names: only the root differs
    before = len(walks)
    treedigest.dir_digest(other, cache)
    assert len(walks) == before + 1


def test_read_only_mode_keeps_the_fingerprint_pending(tree: Path, tmp_path: Path, walks) -> None:
    cache = tmp_path / "cache.json"
    with treedigest.digest_caches_read_only():
        treedigest.dir_digest(tree, cache)
    assert not cache.exists() and not (tmp_path / "cache.json.fingerprint").exists()
    assert set(treedigest._PENDING) == {cache, tmp_path / "cache.json.fingerprint"}
    treedigest.write_pending_digest_caches()
    assert (tmp_path / "cache.json.fingerprint").is_file() and not treedigest._PENDING


def test_prefetched_listings_are_used_once(tree: Path, tmp_path: Path, walks, monkeypatch) -> None:
    cache = tmp_path / "cache.json"
    first = treedigest.dir_digest(tree, cache)
    treedigest.prefetch_listings([tree, tree, tmp_path / "missing"])
    assert set(treedigest._LISTINGS) == {str(tree)}
    calls: list[Path] = []
    real = treedigest.listing_fingerprint
    monkeypatch.setattr(treedigest, "listing_fingerprint", lambda root: calls.append(root) or real(root))
    assert treedigest.dir_digest(tree, cache) == first and calls == [] and not treedigest._LISTINGS
    (tree / "configure").write_text("#!/bin/sh\nexit 1\n")
    assert treedigest.dir_digest(tree, cache) != first and calls == [tree], "a used listing was used again"


def test_listings_named_together_are_taken_by_the_first_override_digest(tree: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    taken: list[list[Path]] = []
    real = treedigest.prefetch_listings
    monkeypatch.setattr(treedigest, "prefetch_listings", lambda roots: taken.append(list(roots)) or real(roots))
    treedigest.list_together([tree, other])
    assert taken == [], "naming the roots ran something"
    treedigest.override_digest(tree, tmp_path / "c1.json")
    assert taken == [[tree, other]] and str(other) in treedigest._LISTINGS
    treedigest.override_digest(other, tmp_path / "c2.json")
    assert len(taken) == 1 and not treedigest._LISTINGS
