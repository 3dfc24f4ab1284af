"""Git fetching with real repositories in tmp dirs: bare mirrors, pins, nested relative submodules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hermitbuild import fetch
from hermitbuild.errors import FetchError, OfflineError
from hermitbuild.recipe import Recipe, Source

from helpers_fetch import FileServer, add_submodule, commit_files, git, make_settings


class Upstream:
    """libhermit.git -> (../lwip.git at a dangling commit) -> (../contrib.git), all non-bare."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.contrib = root / "contrib.git"
        self.lwip = root / "lwip.git"
        self.parent = root / "libhermit.git"
        self.c1 = commit_files(self.contrib, {"c.txt": "contrib 1\n"}, "c1")
        commit_files(self.contrib, {"c.txt": "contrib 2\n"}, "c2")
        self.l0 = commit_files(self.lwip, {"lwip.c": "lwip 0\n"}, "l0")
        self.l1 = add_submodule(self.lwip, "contrib", "../contrib.git", self.c1)
        # move lwip's branch away: l1 is now on no branch (fetched by id only)
        git(self.lwip, "reset", "-q", "--hard", self.l0)
        self.l2 = commit_files(self.lwip, {"lwip.c": "lwip 2\n"}, "l2")
        self.p1 = commit_files(self.parent, {"kernel.c": "kernel 1\n"}, "p1")
        self.p2 = add_submodule(self.parent, "lwip", "../lwip.git", self.l1, date=1500000200)
        self.p3 = commit_files(self.parent, {"kernel.c": "kernel 3\n"}, "p3", date=1500000300)


@pytest.fixture()
def up(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "up")


def gsrc(url: str, commit: str, **kw) -> Source:
    return Source(kind="git", url=url, commit=commit, **kw)


def has_commit(repo: Path, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


def assert_tree_at_p2(tree: Path) -> None:
    assert (tree / "kernel.c").read_text() == "kernel 1\n"
    assert (tree / "lwip/lwip.c").read_text() == "lwip 0\n"
    assert (tree / "lwip/contrib/c.txt").read_text() == "contrib 1\n"


def test_checkout_exact_pin_with_nested_relative_submodules(tmp_path: Path, up: Upstream) -> None:
    settings = make_settings(tmp_path)
    src = gsrc(str(up.parent), up.p2)
    assert not fetch.is_fetched(src, settings)
    mirror = fetch.fetch_source(src, settings)
    assert mirror == fetch.git_mirror_path(str(up.parent), settings)
    assert (mirror / "HEAD").is_file() and not (mirror / ".git").exists()  # bare
    assert fetch.is_fetched(src, settings)
    sub_mirrors = {fetch.git_mirror_path(str(up.lwip), settings),
                   fetch.git_mirror_path(str(up.contrib), settings)}
    assert sub_mirrors | {mirror} == {p for p in (settings.downloads / "git").iterdir()
                                      if p.name.endswith(".git")}
    assert has_commit(fetch.git_mirror_path(str(up.lwip), settings), up.l1)  # fetched by id
    dest = tmp_path / "tree"
    fetch.checkout(src, settings, dest)
    assert_tree_at_p2(dest)
    assert not list(dest.rglob(".git"))  # no .git by default
    assert fetch.commit_date(src, settings) == 1500000200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "tree", "up"]  # no temp dirs left


def test_keep_git_heads_are_the_pins(tmp_path: Path, up: Upstream) -> None:
    settings = make_settings(tmp_path)
    dest = tmp_path / "tree"
    fetch.checkout(gsrc(str(up.parent), up.p2, dest="sub/dir"), settings, dest, keep_git=True)
    tree = dest / "sub/dir"
    assert_tree_at_p2(tree)
    assert git(tree, "rev-parse", "HEAD") == up.p2
    assert git(tree / "lwip", "rev-parse", "HEAD") == up.l1
    assert git(tree / "lwip/contrib", "rev-parse", "HEAD") == up.c1
    assert git(tree, "remote", "get-url", "origin") == str(up.parent)


def test_without_submodules(tmp_path: Path, up: Upstream) -> None:
    settings = make_settings(tmp_path)
    src = gsrc(str(up.parent), up.p2, submodules=False)
    fetch.checkout(src, settings, tmp_path / "tree")
    assert (tmp_path / "tree/kernel.c").exists()
    assert list((tmp_path / "tree/lwip").iterdir()) == []
    assert fetch.is_fetched(src, settings)
    assert not fetch.is_fetched(gsrc(str(up.parent), up.p2), settings)  # submodules not fetched yet


def test_mirror_is_fetched_only_when_the_pin_is_missing(tmp_path: Path, up: Upstream) -> None:
    settings = make_settings(tmp_path)
    old = gsrc(str(up.parent), up.p1)
    mirror = fetch.fetch_source(old, settings)
    p4 = commit_files(up.parent, {"kernel.c": "kernel 4\n"}, "p4")
    fetch.fetch_source(old, settings)  # pin present: no fetch, so p4 does not arrive
    assert not has_commit(mirror, p4)
    fetch.fetch_source(gsrc(str(up.parent), p4, submodules=False), settings)  # missing: fetched
    assert has_commit(mirror, p4)
    fetch.fetch_source(gsrc(str(up.parent), up.p2), settings)
    # upstream gone: everything pinned still works from the mirrors alone
    shutil.rmtree(up.root)
    fetch.fetch_source(gsrc(str(up.parent), up.p2), settings)
    fetch.checkout(gsrc(str(up.parent), up.p2), settings, tmp_path / "again")
    assert_tree_at_p2(tmp_path / "again")
    # ... and a pin that is not in the mirror fails, naming what was tried
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(FetchError) as info:
        fetch.fetch_source(gsrc(str(up.parent), missing), settings)
    assert missing in str(info.value) and str(up.parent) in str(info.value)


def test_file_url(tmp_path: Path, up: Upstream) -> None:
    settings = make_settings(tmp_path)
    src = gsrc(up.parent.as_uri(), up.p2)
    fetch.checkout(src, settings, tmp_path / "tree")
    assert_tree_at_p2(tmp_path / "tree")
    # relative submodule URLs resolved against the file:// URL
    assert fetch.git_mirror_path(up.lwip.as_uri(), settings).is_dir()


def test_local_mirror_before_upstream_and_offline(tmp_path: Path, up: Upstream) -> None:
    mirror_dir = tmp_path / "mirrors"
    mirror_dir.mkdir()
    shutil.copytree(up.parent, mirror_dir / "libhermit.git")  # <name>.git, non-bare
    shutil.copytree(up.lwip, mirror_dir / "lwip")  # <name>, non-bare
    git(tmp_path, "clone", "-q", "--bare", str(up.contrib), str(mirror_dir / "contrib.git"))  # bare
    with FileServer() as server:
        url = server.url("/git/libhermit.git")  # upstream over the network (serves nothing)
        # offline without mirrors: nothing reaches the server, the error names the mirror path
        settings = make_settings(tmp_path / "a", offline=True)
        with pytest.raises(OfflineError) as info:
            fetch.fetch_source(gsrc(url, up.p2), settings)
        where = fetch.git_mirror_path(url, settings)
        assert str(where) in str(info.value) and up.p2 in str(info.value)
        assert not where.exists()  # a failed first fetch leaves no half mirror
        assert server.log == []
        # offline with a local mirror: used (not network)
        settings = make_settings(tmp_path / "b", offline=True, mirrors=(str(mirror_dir),))
        fetch.checkout(gsrc(url, up.p2), settings, tmp_path / "b/tree")
        assert_tree_at_p2(tmp_path / "b/tree")
        # online: the mirror is used before upstream, upstream sees no request
        settings = make_settings(tmp_path / "c", mirrors=(mirror_dir.as_uri(),))
        fetch.fetch_source(gsrc(url, up.p2), settings)
        assert server.log == []
        # online, mirror lacks the pin: upstream is asked (and fails: it is not a git server)
        missing = "0123456789abcdef0123456789abcdef01234567"
        with pytest.raises(FetchError) as info2:
            fetch.fetch_source(gsrc(url, missing), settings)
        assert url in str(info2.value)
        assert server.requests_for("/git/libhermit.git")


def test_bad_pin_is_a_clear_error(tmp_path: Path, up: Upstream) -> None:
    with pytest.raises(FetchError, match="40-hex"):
        fetch.fetch_source(gsrc(str(up.parent), "main"), make_settings(tmp_path))


def test_fetch_recipe(tmp_path: Path, up: Upstream) -> None:
    rec = Recipe(name="hermit", version="1", file=tmp_path / "r.yaml",
                 sources=(gsrc(str(up.parent), up.p1, submodules=False),
                          gsrc(str(up.contrib), up.c1)))
    paths = fetch.fetch_recipe(rec, make_settings(tmp_path))
    assert [p.is_dir() for p in paths] == [True, True]


def test_cheap_functions_run_no_subprocess(tmp_path: Path, up: Upstream,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    src = gsrc(str(up.parent), up.p2)
    fetch.fetch_source(src, settings)
    tar = Source(kind="tarball", url="https://example.org/x.tar.gz", sha256="0" * 64)

    def refuse(*a, **k):
        raise AssertionError("cheap function started a subprocess")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert fetch.is_fetched(src, settings)
    assert not fetch.is_fetched(gsrc(str(up.parent), up.p3), settings)
    assert not fetch.is_fetched(tar, settings)
    assert fetch.commit_date(src, settings) == 1500000200
    fetch.git_mirror_path("https://github.com/hermitcore/libhermit.git", settings)
    fetch.tarball_path(tar, settings)


@pytest.mark.parametrize("parent,rel,expected", [
    ("https://github.com/hermitcore/libhermit.git", "../lwip.git", "https://github.com/hermitcore/lwip.git"),
    ("https://github.com/hermitcore/libhermit", "./sub", "https://github.com/hermitcore/libhermit/sub"),
    ("https://h/a/b/c.git", "../../x.git", "https://h/a/x.git"),
    ("file:///srv/git/parent.git", "../lwip.git", "file:///srv/git/lwip.git"),
    ("/srv/git/parent", "../lwip.git", "/srv/git/lwip.git"),
    ("https://h/p.git", "https://other/abs.git", "https://other/abs.git"),
])
def test_relative_submodule_urls(parent: str, rel: str, expected: str) -> None:
    assert fetch.git._resolve_submodule_url(parent, rel) == expected


def test_mirror_names(tmp_path: Path) -> None:
    s = make_settings(tmp_path)
    assert fetch.git_mirror_path("https://github.com/hermitcore/libhermit.git", s).name == \
        "github.com+hermitcore+libhermit.git"
    assert fetch.git_mirror_path("https://github.com/hermitcore/libhermit", s).name == \
        "github.com+hermitcore+libhermit.git"
    assert fetch.git_mirror_path("http://127.0.0.1:8080/x/y.git", s).name == "127.0.0.1_8080+x+y.git"
    assert fetch.git_mirror_path("git@github.com:hermitcore/newlib.git", s).name == \
        "github.com+hermitcore+newlib.git"
    assert fetch.git_mirror_path("/srv/git/r", s).name == "local+srv+git+r.git"
