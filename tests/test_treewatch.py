"""The override watcher: a real inotify watcher process answering for a real tree.

Each test starts its own watcher (a `python -m hermitbuild.treewatch` process) with its
sockets in a private run directory, and checks what the digest layer makes of its answers:
an unchanged tree costs no listing, and every kind of change (same size and same mtime
included) gives the digest of a fresh walk.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from hermitbuild import treedigest, treewatch

pytestmark = pytest.mark.skipif(not Path("/proc/sys/fs/inotify").is_dir(), reason="needs inotify (Linux)")


@pytest.fixture
def run_dir(monkeypatch) -> Iterator[Path]:
    """A private, short run directory (a Unix socket path has at most 107 bytes) and watching
    on, for this test only; its watchers are stopped at the end."""
    short = Path(tempfile.mkdtemp(prefix="hbw", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short))
    monkeypatch.setattr(treewatch, "_IDLE", 60.0)
    monkeypatch.setattr(treewatch, "_UNAVAILABLE", set())
    monkeypatch.setattr(treedigest, "_RACY_NS", 0)
    yield short / "hermitbuild"
    for proc in treewatch._SPAWNED:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    treewatch._SPAWNED.clear()
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, text in {"gcc/config/hermit.h": "#define HERMIT 1\n", "configure": "#!/bin/sh\n",
                      ".git/index": "index\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def listings(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = treedigest.listing_fingerprint
    monkeypatch.setattr(treedigest, "listing_fingerprint", lambda root: calls.append(root) or real(root))
    return calls


def digest(tree: Path, tmp_path: Path) -> str:
    return treedigest.dir_digest(tree, tmp_path / "cache.json")


def fresh(tree: Path) -> str:
    return treedigest.dir_digest(tree)  # no cache: a full walk


def test_an_unchanged_tree_costs_no_listing(run_dir: Path, tree: Path, tmp_path: Path, listings) -> None:
    first = digest(tree, tmp_path)
    assert listings == [tree]  # the first run lists, with the watcher already watching
    assert [p.suffix for p in run_dir.iterdir() if p.suffix == ".sock"] == [".sock"]
    for _ in range(3):
        assert digest(tree, tmp_path) == first == fresh(tree)
    assert listings == [tree]
    status = treewatch.ask(tree)
    assert status is not None and status.digest == first


def test_same_size_same_mtime_edit_is_seen(run_dir: Path, tree: Path, tmp_path: Path, listings) -> None:
    header = tree / "gcc" / "config" / "hermit.h"
    before = digest(tree, tmp_path)
    st = header.stat()
    header.write_text("#define HERMIT 2\n")
    os.utime(header, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = digest(tree, tmp_path)
    assert after != before and after == fresh(tree)
    assert len(listings) == 2
    assert digest(tree, tmp_path) == after and len(listings) == 2  # and then quiet again


@pytest.mark.parametrize("change", ["chmod", "new file", "delete", "rename file", "symlink"])
def test_every_kind_of_change_is_seen(run_dir: Path, tree: Path, tmp_path: Path, change: str) -> None:
    before = digest(tree, tmp_path)
    assert digest(tree, tmp_path) == before
    if change == "chmod":
        (tree / "configure").chmod(0o755)
    elif change == "new file":
        (tree / "gcc" / "new.c").write_text("int x;\n")
    elif change == "delete":
        (tree / "configure").unlink()
    elif change == "rename file":
        (tree / "configure").rename(tree / "gcc" / "configure")
    else:
        (tree / "link").symlink_to("configure")
    after = digest(tree, tmp_path)
    assert after != before and after == fresh(tree)


def test_a_new_directory_is_watched_too(run_dir: Path, tree: Path, tmp_path: Path) -> None:
    digest(tree, tmp_path)
    (tree / "libgcc" / "config").mkdir(parents=True)
    (tree / "libgcc" / "config" / "t-hermit").write_text("a\n")
    middle = digest(tree, tmp_path)
    assert middle == fresh(tree)
    (tree / "libgcc" / "config" / "t-hermit").write_text("b\n")  # inside the new directory
    after = digest(tree, tmp_path)
    assert after != middle and after == fresh(tree)


def test_git_metadata_is_not_a_change(run_dir: Path, tree: Path, tmp_path: Path, listings) -> None:
    first = digest(tree, tmp_path)
    (tree / ".git" / "index").write_text("refreshed\n")
    (tree / ".git" / "objects").mkdir()
    assert digest(tree, tmp_path) == first
    assert len(listings) == 1


def test_a_moved_directory_stops_the_watcher_and_the_next_run_lists(run_dir: Path, tree: Path,
                                                                    tmp_path: Path, listings) -> None:
    digest(tree, tmp_path)
    old = treewatch.ask(tree)
    (tree / "gcc").rename(tree / "gcc2")
    after = digest(tree, tmp_path)
    assert after == fresh(tree)
    new = treewatch.ask(tree)
    assert old is not None and new is not None and new.watcher != old.watcher
    (tree / "gcc2" / "config" / "hermit.h").write_text("moved and edited\n")
    assert digest(tree, tmp_path) == fresh(tree)


def test_a_killed_watcher_is_replaced(run_dir: Path, tree: Path, tmp_path: Path) -> None:
    digest(tree, tmp_path)
    for proc in treewatch._SPAWNED:
        proc.kill()
        proc.wait(10)
    (tree / "configure").write_text("#!/bin/sh\nexit 1\n")  # while nobody watches
    assert digest(tree, tmp_path) == fresh(tree)
    assert len([p for p in treewatch._SPAWNED if p.poll() is None]) == 1


def test_a_stale_record_is_refused(run_dir: Path, tree: Path, tmp_path: Path) -> None:
    status = treewatch.ask(tree)
    assert status is not None and status.digest is None
    (tree / "configure").write_text("changed after the question\n")
    treewatch.record(status, "0" * 64)  # a digest taken before the edit was seen
    after = treewatch.ask(tree)
    assert after is not None and after.digest is None and after.generation > status.generation
    assert digest(tree, tmp_path) == fresh(tree)


def test_a_hard_linked_file_keeps_the_tree_listed(run_dir: Path, tree: Path, tmp_path: Path, listings) -> None:
    os.link(tree / "configure", tmp_path / "elsewhere")
    first = digest(tree, tmp_path)
    assert digest(tree, tmp_path) == first
    assert len(listings) == 2  # no digest was recorded: an edit through the other link is not seen
    (tmp_path / "elsewhere").write_text("edited through the other link\n")
    assert digest(tree, tmp_path) == fresh(tree) != first


def test_idle_watchers_go_away(run_dir: Path, tree: Path, monkeypatch) -> None:
    monkeypatch.setattr(treewatch, "_IDLE", 0.5)
    assert treewatch.ask(tree) is not None
    proc = treewatch._SPAWNED[-1]
    assert proc.wait(20) == 0
    assert not list(run_dir.glob("*.sock"))
    assert "nobody asked" in next(run_dir.glob("*.log")).read_text()


def test_a_deleted_tree_stops_its_watcher(run_dir: Path, tree: Path) -> None:
    assert treewatch.ask(tree) is not None
    shutil.rmtree(tree)
    assert treewatch._SPAWNED[-1].wait(20) == 0
    assert "deleted or moved" in next(run_dir.glob("*.log")).read_text()


def test_no_watcher_where_it_cannot_see_everything(run_dir: Path, tree: Path, tmp_path: Path,
                                                   monkeypatch, listings) -> None:
    monkeypatch.setattr(treewatch, "fs_type", lambda path: "nfs4")
    assert treewatch.ask(tree) is None
    first = digest(tree, tmp_path)
    assert digest(tree, tmp_path) == first and len(listings) == 2
    assert not treewatch._SPAWNED


def test_a_shared_run_directory_is_refused(run_dir: Path, tree: Path) -> None:
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o777)
    assert treewatch.ask(tree) is None
    assert not treewatch._SPAWNED


def test_watching_off_starts_nothing(run_dir: Path, tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(treewatch, "_IDLE", 0.0)
    digest(tree, tmp_path)
    assert treewatch.ask(tree) is None and not treewatch._SPAWNED


def test_many_edits_at_once(run_dir: Path, tree: Path, tmp_path: Path) -> None:
    """A burst of changes, more than the watcher reads in one go, each moving the digest."""
    digest(tree, tmp_path)
    for i in range(2000):
        (tree / "gcc" / f"f{i % 50}.c").write_text(f"int v{i};\n")
    assert digest(tree, tmp_path) == fresh(tree)


def test_the_watcher_module_explains_its_arguments() -> None:
    assert treewatch.main([]) == 2


def test_mountinfo_names_this_file_system(tmp_path: Path) -> None:
    kind = treewatch.fs_type(tmp_path)
    assert kind is not None and kind.isprintable()
    assert treewatch.fs_type(Path("/proc/self")) == "proc"


def test_the_setting_is_a_duration_and_zero_turns_watching_off(tmp_path: Path) -> None:
    from hermitbuild.errors import ConfigError
    from hermitbuild.settings import load_settings

    assert load_settings(environ={}).override_watch_seconds == 4 * 3600  # the shipped default
    assert load_settings(environ={"HERMITBUILD_OVERRIDE_WATCH": "0"}).override_watch_seconds == 0
    assert load_settings(environ={"HERMITBUILD_OVERRIDE_WATCH": "90s"}).override_watch_seconds == 90
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"HERMITBUILD_OVERRIDE_WATCH": "soon"})
    assert "override_watch" in str(exc.value) and "0 for no watchers" in str(exc.value)


def test_a_client_that_goes_away_does_not_stop_the_watcher(run_dir: Path, tree: Path) -> None:
    import socket

    first = treewatch.ask(tree)
    assert first is not None
    sock_path = next(run_dir.glob("*.sock"))
    for request in (b"", b"not json\n", b'{"ask": true'):  # hung up early, garbage, cut short
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(sock_path))
            conn.sendall(request)
    again = treewatch.ask(tree)
    assert again is not None and again.watcher == first.watcher
