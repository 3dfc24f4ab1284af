"""hermitbuild.prepare: prepared trees (overrides, patches, generate hook, stamps, swap, incremental)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hermitbuild import plan, prepare, treedigest
from hermitbuild.errors import ConfigError, HermitBuildError, PatchError, RecipeError
from hermitbuild.recipe import Recipe, load_recipe, load_recipes
from hermitbuild.settings import Settings

from helpers_prepare import git, lines, make_patch, snapshot, write_tree

FAKE_SHA = "ab" * 32


def recipe_yaml(name: str, *, extra: str = "", source: str | None = None) -> str:
    source = source or (f"  - tarball: https://example.invalid/{name}-1.0.tar.gz\n"
                        f"    sha256: {FAKE_SHA}\n")
    return (f"name: {name}\nversion: \"1.0\"\ndescription: test recipe {name}\n{extra}"
            f"sources:\n{source}steps:\n  - name: build\n    make: [all]\n")


class Env:
    """A tmp project: recipes/, patches/, override dirs and Settings pointing at them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "recipes").mkdir(parents=True, exist_ok=True)
        (root / "patches").mkdir(exist_ok=True)
        self.overrides: dict[str, Path] = {}
        self.mirrors: tuple[str, ...] = ()
        self.offline = False

    def settings(self) -> Settings:
        return Settings(root=self.root, prefix=self.root / "prefix", build_dir=self.root / "build",
                        cache_dir=self.root / "cache", overrides=dict(self.overrides),
                        mirrors=self.mirrors, offline=self.offline)

    def add_recipe(self, name: str, *, extra: str = "", source: str | None = None,
                   override_files: dict[str, str] | None = None) -> None:
        (self.root / "recipes" / f"{name}.yaml").write_text(recipe_yaml(name, extra=extra,
                                                                        source=source))
        if override_files is not None:
            src = self.root / "upstream" / name
            write_tree(src, override_files)
            self.overrides[name] = src

    def recipe(self, name: str) -> Recipe:
        return load_recipe(self.root / "recipes" / f"{name}.yaml", self.root / "patches",
                           {"gcc_variant": "upstream"})

    def patch(self, recipe: str, filename: str, before: dict, after: dict) -> Path:
        return make_patch(before, after, self.root / "mk", self.root / "patches" / recipe / filename)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path / "proj")


def leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.src_dir.iterdir() if p.name.startswith(".")
                  and not p.name.endswith(".lock"))


def test_override_git_repo_with_uncommitted_changes(env: Env) -> None:
    env.add_recipe("hermit-bootstrap", override_files={"kernel/main.c": "int main;\n",
                                                       "README": "hi\n"})
    src = env.overrides["hermit-bootstrap"]
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "init")
    (src / "kernel/main.c").write_text("int main; /* uncommitted */\n")
    (src / "untracked.c").write_text("new\n")
    s = env.settings()
    rec = env.recipe("hermit-bootstrap")
    assert not prepare.is_prepared(rec, s)
    tree = prepare.prepare_tree(rec, s)
    assert tree == s.src_dir / "hermit-bootstrap" == prepare.tree_path(rec, s)
    assert (tree / "kernel/main.c").read_text() == "int main; /* uncommitted */\n"
    assert (tree / "untracked.c").exists()
    assert not (tree / ".git").exists()
    assert prepare.is_prepared(rec, s)
    stamp = json.loads((s.stamps_dir / "prepare" / "hermit-bootstrap.json").read_text())
    assert stamp["identity"] == prepare.tree_identity(rec, s)
    assert stamp["override"]["path"] == str(src)

    # an unchanged second prepare is not needed; a content change is noticed
    before = prepare.tree_identity(rec, s)
    (src / "kernel/main.c").write_text("int main; /* edited */\n")
    assert prepare.tree_identity(rec, s) != before
    assert not prepare.is_prepared(rec, s)
    prepare.prepare_tree(rec, s)
    assert (tree / "kernel/main.c").read_text() == "int main; /* edited */\n"
    assert prepare.is_prepared(rec, s)
    # .git content does not matter; a new empty dir, a mode change and a symlink do
    ident = prepare.tree_identity(rec, s)
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "more")
    assert prepare.tree_identity(rec, s) == ident
    (src / "kernel/main.c").chmod(0o755)
    ident2 = prepare.tree_identity(rec, s)
    assert ident2 != ident
    (src / "link").symlink_to("README")
    assert prepare.tree_identity(rec, s) != ident2
    assert leftovers(s) == []


def test_override_digest_cache_sees_same_size_same_mtime_edit(env: Env, monkeypatch) -> None:
    import time
    env.add_recipe("newlib", override_files={"a.c": "aaaa\n"})
    s, rec = env.settings(), env.recipe("newlib")
    f = env.overrides["newlib"] / "a.c"
    monkeypatch.setattr(treedigest, "_RACY_NS", 0)  # cache even just-written files
    first = prepare.tree_identity(rec, s)
    cache = json.loads((s.stamps_dir / "prepare" / "newlib.override-cache.json").read_text())
    assert "a.c" in cache["files"]
    assert prepare.tree_identity(rec, s) == first  # from the cache
    st = f.stat()
    time.sleep(0.05)  # let the coarse file-system clock tick
    f.write_text("bbbb\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: ctime still moves
    assert prepare.tree_identity(rec, s) != first


def test_a_doit_run_hashes_each_override_once(env: Env, monkeypatch) -> None:
    """Once the doit entry point says so, an override tree is walked once per process, however
    many keys need it; before that (tests, embedding) every call sees edits."""
    env.add_recipe("newlib", override_files={"a.c": "aaaa\n"})
    s, rec = env.settings(), env.recipe("newlib")
    calls: list[Path] = []
    real = treedigest.dir_digest
    monkeypatch.setattr(treedigest, "dir_digest", lambda root, cache=None: calls.append(root) or real(root, cache))
    monkeypatch.setattr(treedigest, "_RUN_DIGESTS", None)
    first = prepare.tree_identity(rec, s)
    (env.overrides["newlib"] / "a.c").write_text("bbbbbb\n")
    second = prepare.tree_identity(rec, s)
    assert second != first and len(calls) == 2
    treedigest.hash_overrides_once_per_run()
    third = [prepare.tree_identity(rec, s) for _ in range(5)]
    assert third == [second] * 5 and len(calls) == 3
    (env.overrides["newlib"] / "a.c").write_text("cc\n")
    assert prepare.tree_identity(rec, s) == second, "an edit during the run waits for the next run"


def test_missing_override_dir_is_a_config_error(env: Env) -> None:
    env.add_recipe("newlib")
    env.overrides["newlib"] = env.root / "nope"
    with pytest.raises(ConfigError, match="overrides.newlib"):
        prepare.tree_identity(env.recipe("newlib"), env.settings())


def test_patches_change_identity_of_only_their_recipe(env: Env) -> None:
    base = {"f.c": lines(10)}
    env.add_recipe("a", override_files=base)
    env.add_recipe("b", override_files=base)
    s = env.settings()
    ids = {n: prepare.tree_identity(env.recipe(n), s) for n in "ab"}
    p1 = env.patch("a", "0001-one.patch", base, {"f.c": lines(10).replace("line 2", "LINE 2")})
    after_add = {n: prepare.tree_identity(env.recipe(n), s) for n in "ab"}
    assert after_add["a"] != ids["a"] and after_add["b"] == ids["b"]
    p1.write_text(p1.read_text().replace("Why: testing", "Why: testing more"))
    after_change = {n: prepare.tree_identity(env.recipe(n), s) for n in "ab"}
    assert after_change["a"] not in (ids["a"], after_add["a"]) and after_change["b"] == ids["b"]
    p1.unlink()
    assert {n: prepare.tree_identity(env.recipe(n), s) for n in "ab"} == ids
    # the syscall digest is part of the identity
    assert prepare.tree_identity(env.recipe("a"), s, "d1") != ids["a"]
    assert prepare.tree_identity(env.recipe("a"), s, "d1") != prepare.tree_identity(
        env.recipe("a"), s, "d2")


def test_pins_make_the_identity(env: Env) -> None:
    env.add_recipe("a")
    s = env.settings()
    one = prepare.tree_identity(env.recipe("a"), s)
    (env.root / "recipes/a.yaml").write_text(recipe_yaml("a").replace(FAKE_SHA, "cd" * 32))
    assert prepare.tree_identity(env.recipe("a"), s) != one
    # a different URL with the same pin is the same tree
    (env.root / "recipes/a.yaml").write_text(recipe_yaml("a").replace("example.invalid",
                                                                      "mirror.invalid"))
    assert prepare.tree_identity(env.recipe("a"), s) == one


def test_patch_series_and_generate_hook(env: Env) -> None:
    base = {"f.c": lines(10)}
    step1 = {"f.c": lines(10).replace("line 2", "LINE 2")}
    step2 = {"f.c": step1["f.c"].replace("LINE 2", "LINE TWO"), "new.h": "#define X 1\n"}
    env.add_recipe("a", override_files=base)
    env.patch("a", "0001-one.patch", base, step1)
    env.patch("a", "0002-two.patch", step1, step2)
    s, rec = env.settings(), env.recipe("a")
    seen: list[Path] = []

    def generate(tree: Path) -> None:
        assert (tree / "f.c").read_text() == step2["f.c"]  # after the patches
        assert tree != s.src_dir / "a" and tree.parent == s.src_dir  # temp dir beside the target
        seen.append(tree)
        (tree / "generated.c").write_text("/* generated */\n")

    tree = prepare.prepare_tree(rec, s, generate, syscall_digest="dig")
    assert seen and not seen[0].exists()
    assert (tree / "f.c").read_text() == step2["f.c"]
    assert (tree / "new.h").exists() and (tree / "generated.c").exists()
    assert prepare.is_prepared(rec, s, "dig") and not prepare.is_prepared(rec, s, "")
    stamp = json.loads((s.stamps_dir / "prepare/a.json").read_text())
    assert [p["name"] for p in stamp["patches"]] == ["0001-one.patch", "0002-two.patch"]
    # prepared already: a second call returns at once without calling the hook
    prepare.prepare_tree(rec, s, lambda t: pytest.fail("hook called again"), syscall_digest="dig")


def test_failed_prepare_keeps_old_tree_and_leaves_nothing(env: Env) -> None:
    base = {"f.c": lines(10), "sub/g.c": "g\n"}
    env.add_recipe("a", override_files=base)
    s = env.settings()
    tree = prepare.prepare_tree(env.recipe("a"), s)
    stamp_file = s.stamps_dir / "prepare/a.json"
    old_tree, old_stamp = snapshot(tree), stamp_file.read_bytes()

    # a patch that does not fit
    env.patch("a", "0001-bad.patch", {"f.c": lines(10, "other")}, {"f.c": lines(10, "OTHER")})
    with pytest.raises(PatchError) as err:
        prepare.prepare_tree(env.recipe("a"), s)
    assert "0001-bad.patch" in str(err.value) and err.value.target == "f.c"
    assert snapshot(tree) == old_tree and stamp_file.read_bytes() == old_stamp
    assert leftovers(s) == []
    assert not prepare.is_prepared(env.recipe("a"), s)
    shutil.rmtree(env.root / "patches/a")

    # a generate hook that fails (any exception)
    (env.overrides["a"] / "f.c").write_text("changed\n")

    def boom(tree: Path) -> None:
        (tree / "half-written").write_text("x")
        raise HermitBuildError("generator failed", "test", "none")

    with pytest.raises(HermitBuildError, match="generator failed"):
        prepare.prepare_tree(env.recipe("a"), s, boom)
    with pytest.raises(KeyboardInterrupt):
        prepare.prepare_tree(env.recipe("a"), s, lambda t: (_ for _ in ()).throw(KeyboardInterrupt))
    assert snapshot(tree) == old_tree and stamp_file.read_bytes() == old_stamp
    assert leftovers(s) == []

    # a leftover from a killed run is cleaned up by the next prepare
    (s.src_dir / ".a.new-killed").mkdir()
    (s.src_dir / ".a.new-killed/x").write_text("x")
    prepare.prepare_tree(env.recipe("a"), s)
    assert (tree / "f.c").read_text() == "changed\n"
    assert leftovers(s) == []


@pytest.mark.parametrize("incremental", [True, False])
def test_incremental_keeps_mtimes_of_unchanged_files(env: Env, incremental: bool) -> None:
    files = {f"src/f{i}.c": f"int f{i};\n" for i in range(20)}
    env.add_recipe("newlib", override_files=files,
                   extra="incremental: true\n" if incremental else "")
    s, rec = env.settings(), env.recipe("newlib")
    tree = prepare.prepare_tree(rec, s)
    old = 1_500_000_000 * 10**9
    for rel in files:  # pretend the tree is old and a build happened after it
        os.utime(tree / rel, ns=(old, old))
    (env.overrides["newlib"] / "src/f3.c").write_text("int f3 = 3;\n")
    (env.overrides["newlib"] / "src/added.c").write_text("int added;\n")
    prepare.prepare_tree(env.recipe("newlib"), s)
    mtimes = {rel: (tree / rel).stat().st_mtime_ns for rel in files}
    if incremental:
        assert all(m == old for rel, m in mtimes.items() if rel != "src/f3.c")
        assert mtimes["src/f3.c"] > old
        assert (tree / "src/added.c").stat().st_mtime_ns > old
        stamp = json.loads((s.stamps_dir / "prepare/newlib.json").read_text())
        assert stamp["incremental"] == {"kept": 19, "changed": 2}
    else:
        assert all(m != old for m in mtimes.values())
    assert (tree / "src/f3.c").read_text() == "int f3 = 3;\n"


def test_an_override_copy_keeps_modes_mtimes_and_links_and_drops_git_and_fifos(env: Env) -> None:
    env.add_recipe("newlib", override_files={"configure": "#!/bin/sh\n", "libc/a.c": "int a;\n"})
    src = env.overrides["newlib"]
    (src / "configure").chmod(0o755)
    os.utime(src / "libc/a.c", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    (src / "link").symlink_to("libc/a.c")
    (src / "libc" / ".git").mkdir()
    (src / "libc" / ".git" / "HEAD").write_text("x\n")
    os.mkfifo(src / "libc" / "fifo")
    tree = prepare.prepare_tree(env.recipe("newlib"), env.settings())
    assert os.access(tree / "configure", os.X_OK)
    assert (tree / "libc/a.c").stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert os.readlink(tree / "link") == "libc/a.c"
    assert not (tree / "libc" / ".git").exists() and not (tree / "libc" / "fifo").exists()
    assert (tree / "libc").stat().st_uid == os.getuid()


def test_override_from_gives_a_second_tree_the_same_override(env: Env) -> None:
    """hermit's own tree from hermit-bootstrap's override (one libhermit checkout), with the
    syscall table generated into hermit's tree only; an entry for hermit itself wins."""
    src = "  - git: https://example.invalid/libhermit.git\n    commit: " + "a" * 40 + "\n"
    env.add_recipe("hermit-bootstrap", source=src, override_files={"kernel/main.c": "int main;\n"})
    env.add_recipe("hermit", source=src, extra="override_from: hermit-bootstrap\n")
    s = env.settings()
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    assert rs["hermit"].override_name(s.overrides) == "hermit-bootstrap"
    assert rs["hermit-bootstrap"].override_name(s.overrides) == "hermit-bootstrap"
    tree = plan.ensure_prepared(rs["hermit"], rs, s)
    assert tree == s.src_dir / "hermit" and (tree / "kernel/main.c").read_text() == "int main;\n"
    assert not (s.src_dir / "hermit-bootstrap").exists(), "a tree of its own, not a shared one"
    own = env.root / "upstream" / "mine"
    write_tree(own, {"kernel/main.c": "int mine;\n"})
    s2 = s.replace(overrides={**s.overrides, "hermit": own})
    assert rs["hermit"].override_name(s2.overrides) == "hermit"
    assert plan.tree_id(rs["hermit"], rs, s2) != plan.tree_id(rs["hermit"], rs, s)
    assert plan.tree_id(rs["hermit-bootstrap"], rs, s2) == plan.tree_id(rs["hermit-bootstrap"], rs, s)
    assert (plan.ensure_prepared(rs["hermit"], rs, s2) / "kernel/main.c").read_text() == "int mine;\n"
    assert rs["hermit"].override_name({}) is None


def test_a_syscall_command_lists_only_the_overrides_of_the_trees_it_edits(env: Env, monkeypatch) -> None:
    """`doit syscall add` needs the identity of the kernel and newlib trees only: the side-by-side
    override listings of a doit run are cut down to theirs (no listing of GCC's 121,000 entries)."""
    src = "  - git: https://example.invalid/libhermit.git\n    commit: " + "a" * 40 + "\n"
    env.add_recipe("binutils", override_files={"big.c": "int big;\n"})
    env.add_recipe("hermit-bootstrap", source=src)
    env.overrides["hermit-bootstrap"] = Path(__file__).parent / "fixtures" / "trees" / "hermit"
    env.add_recipe("hermit", source=src, extra="override_from: hermit-bootstrap\nsyscalls: kernel\n")
    (env.root / "syscalls").mkdir()
    (env.root / "syscalls" / "table.yaml").write_text("syscalls: []\n")
    s = env.settings()
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    plan.ensure_prepared(rs["hermit"], rs, s)
    listed: list[list[Path]] = []
    monkeypatch.setattr(treedigest, "prefetch_listings", lambda roots: listed.append(list(roots)))
    monkeypatch.setattr(treedigest, "_RUN_DIGESTS", {})
    treedigest.list_together(s.overrides.values())  # what the doit entry point names
    assert plan.run_syscall_command(["list"], rs, s, automake=lambda d: None) == 0
    assert listed == [[env.overrides["hermit-bootstrap"]]]


def test_override_from_needs_a_recipe_with_the_same_sources(env: Env) -> None:
    src = "  - git: https://example.invalid/libhermit.git\n    commit: " + "a" * 40 + "\n"
    other = "  - git: https://example.invalid/libhermit.git\n    commit: " + "b" * 40 + "\n"
    env.add_recipe("hermit-bootstrap", source=src)
    env.add_recipe("hermit", source=other, extra="override_from: hermit-bootstrap\n")
    with pytest.raises(RecipeError, match="same sources") as info:
        load_recipes(env.root / "recipes", env.root / "patches")
    assert info.value.field == "override_from" and info.value.line == 4
    env.add_recipe("hermit", source=src, extra="override_from: nothing-like-it\n")
    with pytest.raises(RecipeError, match="same sources"):
        load_recipes(env.root / "recipes", env.root / "patches")
    env.add_recipe("hermit", source=src, extra="override_from: [hermit-bootstrap]\n")
    with pytest.raises(RecipeError, match="must name another recipe"):
        load_recipes(env.root / "recipes", env.root / "patches")


def test_tree_from_shares_the_owner_tree(env: Env) -> None:
    env.add_recipe("hermit-bootstrap", override_files={"CMakeLists.txt": "project(x)\n"})
    (env.root / "recipes/hermit.yaml").write_text(
        "name: hermit\nversion: \"1\"\ndescription: borrower\ntree_from: hermit-bootstrap\n"
        "steps:\n  - name: build\n    make: [all]\n")
    s = env.settings()
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    hermit = rs["hermit"]
    assert prepare.tree_path(hermit, s) == s.src_dir / "hermit-bootstrap"
    assert plan.tree_id(hermit, rs, s) == plan.tree_id(rs["hermit-bootstrap"], rs, s)
    tree = plan.ensure_prepared(hermit, rs, s)
    assert tree == s.src_dir / "hermit-bootstrap" and (tree / "CMakeLists.txt").exists()
    assert plan.is_prepared(hermit, rs, s) and plan.is_prepared(rs["hermit-bootstrap"], rs, s)
    assert not (s.src_dir / "hermit").exists()
    with pytest.raises(RecipeError, match="borrows its tree"):  # prepare works on owners only
        prepare.tree_identity(hermit, s)


def test_deleted_tree_is_not_prepared(env: Env) -> None:
    env.add_recipe("a", override_files={"x": "1\n"})
    s, rec = env.settings(), env.recipe("a")
    tree = prepare.prepare_tree(rec, s)
    shutil.rmtree(tree)
    assert not prepare.is_prepared(rec, s)
    prepare.prepare_tree(rec, s)
    assert prepare.is_prepared(rec, s)


# ---------------------------------------------------------------------- with the real fetch stage

def test_tarball_from_local_mirror_offline(env: Env) -> None:
    pytest.importorskip("hermitbuild.fetch")
    import hashlib
    import tarfile
    pkg = env.root / "pkgsrc" / "pkg-1.0"
    write_tree(pkg, {"configure": "#!/bin/sh\necho configured\n", "src/x.c": lines(12)})
    (pkg / "configure").chmod(0o755)
    mirror = env.root / "mirror"
    mirror.mkdir()
    tarball = mirror / "pkg-1.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(pkg, arcname="pkg-1.0")
    sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    env.mirrors = (str(mirror),)
    env.offline = True  # never the network: the mirror dir is local
    source = f"  - tarball: https://ftp.invalid/gnu/pkg-1.0.tar.gz\n    sha256: {sha}\n"
    env.add_recipe("pkg", source=source)
    env.patch("pkg", "0001-fix.patch", {"src/x.c": lines(12)},
              {"src/x.c": lines(12).replace("line 7", "line seven")})
    s, rec = env.settings(), env.recipe("pkg")
    tree = prepare.prepare_tree(rec, s)
    assert os.access(tree / "configure", os.X_OK)
    assert "line seven" in (tree / "src/x.c").read_text()
    assert prepare.is_prepared(rec, s)
    assert (s.downloads / "pkg-1.0.tar.gz").exists()
    assert leftovers(s) == []


def test_git_source_pin_change_and_incremental(env: Env) -> None:
    pytest.importorskip("hermitbuild.fetch")
    upstream = env.root / "libhermit"
    write_tree(upstream, {f"kernel/k{i}.c": f"int k{i};\n" for i in range(10)})
    git(upstream, "init", "-q")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "one")
    first = git(upstream, "rev-parse", "HEAD").strip()
    (upstream / "kernel/k4.c").write_text("int k4 = 4;\n")
    git(upstream, "commit", "-q", "-am", "two")
    second = git(upstream, "rev-parse", "HEAD").strip()
    env.offline = True

    def pin(commit: str) -> None:
        env.add_recipe("hermit-bootstrap", extra="incremental: true\n",
                       source=f"  - git: {upstream}\n    commit: {commit}\n    submodules: false\n")

    pin(first)
    s = env.settings()
    tree = prepare.prepare_tree(env.recipe("hermit-bootstrap"), s)
    assert (tree / "kernel/k4.c").read_text() == "int k4;\n"
    assert not (tree / ".git").exists()
    old = 1_400_000_000 * 10**9
    for i in range(10):
        os.utime(tree / f"kernel/k{i}.c", ns=(old, old))
    ident = prepare.tree_identity(env.recipe("hermit-bootstrap"), s)
    pin(second)
    assert prepare.tree_identity(env.recipe("hermit-bootstrap"), s) != ident
    assert not prepare.is_prepared(env.recipe("hermit-bootstrap"), s)
    prepare.prepare_tree(env.recipe("hermit-bootstrap"), s)
    assert (tree / "kernel/k4.c").read_text() == "int k4 = 4;\n"
    assert (tree / "kernel/k4.c").stat().st_mtime_ns > old
    assert all((tree / f"kernel/k{i}.c").stat().st_mtime_ns == old for i in range(10) if i != 4)
    assert prepare.is_prepared(env.recipe("hermit-bootstrap"), s)


def test_concurrent_prepares_of_one_tree_are_serialised(env: Env) -> None:
    import threading
    env.add_recipe("a", override_files={f"f{i}.c": f"int f{i};\n" for i in range(200)})
    s, rec = env.settings(), env.recipe("a")
    calls: list[Path] = []
    errors: list[BaseException] = []

    def hook(tree: Path) -> None:
        calls.append(tree)

    def run() -> None:
        try:
            prepare.prepare_tree(rec, s, hook)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1  # the others found the tree prepared once they got the lock
    assert prepare.is_prepared(rec, s) and leftovers(s) == []
    assert len(list((s.src_dir / "a").iterdir())) == 200


def test_failed_swap_keeps_old_tree_and_stamp(env: Env, monkeypatch) -> None:
    env.add_recipe("a", override_files={"x.c": "1\n"})
    s = env.settings()
    tree = prepare.prepare_tree(env.recipe("a"), s)
    stamp_file = s.stamps_dir / "prepare/a.json"
    old_tree, old_stamp = snapshot(tree), stamp_file.read_bytes()
    (env.overrides["a"] / "x.c").write_text("2\n")

    def broken_swap(new: Path, target: Path) -> Path | None:
        raise OSError(13, "Permission denied", str(target))

    monkeypatch.setattr(prepare, "_swap_in", broken_swap)
    with pytest.raises(HermitBuildError, match="could not move the prepared tree"):
        prepare.prepare_tree(env.recipe("a"), s)
    assert snapshot(tree) == old_tree and stamp_file.read_bytes() == old_stamp
    assert leftovers(s) == []


def test_uptodate_checks_write_no_digest_cache_and_the_next_action_does(env: Env, monkeypatch) -> None:
    """doit's uptodate checks must change nothing: the override digest cache is only read
    there; what they would write is written by the next action (so it is hashed once)."""
    from hermitbuild import cli

    monkeypatch.setattr(treedigest, "_RACY_NS", 0)  # cache even just-written files
    env.add_recipe("a", override_files={"x.c": "int x;\n"})
    s, rec = env.settings(), env.recipe("a")
    stamps = s.stamps_dir / "prepare"
    before = sorted(p.name for p in stamps.rglob("*")) if stamps.exists() else []
    assert cli._safe(lambda: bool(prepare.tree_identity(rec, s)))
    after = sorted(p.name for p in stamps.rglob("*")) if stamps.exists() else []
    assert after == before, "an uptodate check wrote a file"
    assert treedigest._PENDING
    assert cli.action(lambda settings: None, s) is None
    assert not treedigest._PENDING and any(stamps.rglob("*")), "the action did not write the cache"


# ---------------------------------------------------------------------- syscall edits in place

from helpers_syscalls import prepared_template  # noqa: E402,F401  (a pytest fixture)


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Path (relative), kind, bytes and mode of everything in a tree (not the mtimes)."""
    return {rel: info[:3] for rel, info in snapshot(root).items() if rel != "."}

from hermitbuild.syscalls import host_automake  # noqa: E402


def _syscall_world(root: Path, template: Path):
    """Settings, recipes and automake for two recipes generating into the fixture trees, both prepared."""
    (root / "recipes").mkdir(parents=True)
    (root / "patches").mkdir()
    (root / "syscalls").mkdir()
    (root / "syscalls" / "table.yaml").write_text("syscalls: []\n")
    for name, side in (("kern", "kernel"), ("nlib", "newlib")):
        (root / "recipes" / f"{name}.yaml").write_text(recipe_yaml(name, extra=f"syscalls: {side}\n"))
    s = Settings(root=root, prefix=root / "prefix", build_dir=root / "build", cache_dir=root / "cache",
                 overrides={"kern": template / "hermit", "nlib": template / "newlib"})
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    automake = host_automake()
    for name in ("kern", "nlib"):
        plan.ensure_prepared(rs[name], rs, s, automake=automake)
    return s, rs, automake


def test_syscall_edit_in_place_keeps_the_trees_prepared_and_equals_a_fresh_prepare(
        tmp_path: Path, prepared_template: Path, capsys) -> None:
    s, rs, automake = _syscall_world(tmp_path / "a", prepared_template)
    kern_tree = prepare.tree_path(rs["kern"], s)
    untouched = kern_tree / "kernel" / "main.c"
    before_mtime = untouched.stat().st_mtime_ns
    assert plan.run_syscall_command(["add", "rename"], rs, s, automake=automake) == 0
    capsys.readouterr()
    # both trees are prepared for the new table: the next build does not prepare them again
    assert plan.is_prepared(rs["kern"], rs, s) and plan.is_prepared(rs["nlib"], rs, s)
    assert json.loads((s.stamps_dir / "prepare" / "kern.json").read_text())["edited_in_place_at"]
    assert untouched.stat().st_mtime_ns == before_mtime  # make rebuilds only what changed
    # ... and they hold what a fresh prepare with that table gives, byte for byte
    fresh = s.replace(build_dir=tmp_path / "fresh-build")
    for name in ("kern", "nlib"):
        assert not plan.is_prepared(rs[name], rs, fresh)
        plan.ensure_prepared(rs[name], rs, fresh, automake=automake)
        assert tree_snapshot(prepare.tree_path(rs[name], s)) == tree_snapshot(
            prepare.tree_path(rs[name], fresh)), name
    # removing the call again: the trees stay prepared
    assert plan.run_syscall_command(["remove", "rename"], rs, s, automake=automake) == 0
    assert plan.is_prepared(rs["kern"], rs, s) and plan.is_prepared(rs["nlib"], rs, s)


def test_a_syscall_edit_that_does_not_apply_or_fails_leaves_no_false_stamp(
        tmp_path: Path, prepared_template: Path, capsys) -> None:
    s, rs, automake = _syscall_world(tmp_path / "b", prepared_template)
    stamp = (s.stamps_dir / "prepare" / "kern.json").read_bytes()
    # refused (an unknown call without a signature): nothing changed, the stamps are as they were
    assert plan.run_syscall_command(["add", "no_such_call"], rs, s, automake=automake) != 0
    assert (s.stamps_dir / "prepare" / "kern.json").read_bytes() == stamp
    assert plan.is_prepared(rs["kern"], rs, s)
    # the table changed but the trees were not touched (--no-apply): not prepared any more
    assert plan.run_syscall_command(["add", "rename", "--no-apply"], rs, s, automake=automake) == 0
    assert not plan.is_prepared(rs["kern"], rs, s) and not plan.is_prepared(rs["nlib"], rs, s)
    capsys.readouterr()
