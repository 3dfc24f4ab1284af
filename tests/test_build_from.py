"""Tests of ``build_from`` (a recipe continuing in another recipe's build directory, as the
final gcc continues in gcc-stage1's: GCC's compilers compiled once) and of the ``ccache``
setting.

Fast tests: the recipe checks (file, field and line in every error), the shared-step count of
the real gcc recipes, the resume decisions in a borrowed directory.  Real podman tests on the
fixture library (tests/fixtures/recipes/libgreet): the second recipe runs only its own steps
in the first one's build directory; with the first one restored from the artifact cache (its
build directory gone) it runs every step, and both ways give the same artifact, byte for
byte.  ccache: a second workspace at another path with an empty artifact cache compiles
nothing (every compile a hit), and the summary says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hermitbuild import build, cache, steps
from hermitbuild.errors import ConfigError, RecipeError
from hermitbuild.fsutil import write_json
from hermitbuild.recipe import load_recipes
from hermitbuild.settings import Settings, load_settings

from helpers_podman import ROOT, FixtureWorld, ensure_base_image, podman_settings, require_podman

FIRST = """\
name: first
version: "1"
image: fixture
sources:
  - tarball: http://127.0.0.1:9/first.tar.gz
    sha256: "{sha}"
steps:
  - name: configure
    configure: ["--prefix={{prefix}}"]
  - name: build
    make: []
  - name: install
    make: [install, "DESTDIR={{stage}}"]
""".format(sha="0" * 64)

SECOND = """\
name: second
version: "1"
image: fixture
depends: [first]
tree_from: first
build_from: {build_from}
steps:
  - name: {first_step}
    configure: ["--prefix={{prefix}}"]
  - name: build
    make: []
  - name: more
    make: [more]
  - name: install
    make: [install-more, "DESTDIR={{stage}}"]
"""


def _recipes(tmp_path: Path, **fmt: str):
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    (d / "first.yaml").write_text(FIRST, encoding="utf-8")
    values = {"build_from": "first", "first_step": "configure", **fmt}
    (d / "second.yaml").write_text(SECOND.format(**values), encoding="utf-8")
    (tmp_path / "patches").mkdir(exist_ok=True)
    return load_recipes(d, tmp_path / "patches")


# --------------------------------------------------------------------------- recipe checks

def test_build_from_must_be_the_tree_owner(tmp_path):
    with pytest.raises(RecipeError) as err:
        _recipes(tmp_path, build_from="other")
    f = err.value.fields
    assert f["field"] == "build_from" and Path(f["file"]).name == "second.yaml"
    assert f["line"] == 6 and "tree_from" in err.value.fix


def test_build_from_needs_a_shared_first_step(tmp_path):
    with pytest.raises(RecipeError) as err:
        _recipes(tmp_path, first_step="setup")
    assert err.value.fields["field"] == "build_from" and err.value.fields["line"] == 6
    assert "'setup'" in str(err.value) and "first's first step" in str(err.value)


def test_build_from_cannot_be_incremental(tmp_path):
    d = tmp_path / "recipes"
    _recipes(tmp_path)
    text = (d / "second.yaml").read_text(encoding="utf-8")
    (d / "second.yaml").write_text(text.replace("image: fixture\n", "image: fixture\nincremental: true\n"))
    with pytest.raises(RecipeError) as err:
        load_recipes(d, tmp_path / "patches")
    assert err.value.fields["field"] == "incremental"


def test_the_final_gcc_shares_configure_and_all_gcc_with_stage1():
    settings = load_settings(ROOT, environ={})
    for variant in ("upstream", "fork"):
        rs = load_recipes(settings.recipes_dir, settings.patches_dir,
                          {**settings.variant_values, "gcc_variant": variant})
        gcc = rs["gcc"]
        assert gcc.build_from == "gcc-stage1"
        assert steps.shared_steps(gcc, rs, settings, Path("/src")) == 2, variant
        assert [s.name for s in gcc.steps[2:]] == ["clean-target", "libgcc", "libstdcxx", "install"]
        # only the target libraries are installed here: the compilers are gcc-stage1's
        assert not any("gcc" in a.split("-target-")[0] for a in gcc.steps[-1].args if a.startswith("install"))


# --------------------------------------------------------------------------- resume decisions

def _settings(tmp_path: Path) -> Settings:
    if not (tmp_path / "containers").exists():
        shutil.copytree(ROOT / "containers", tmp_path / "containers")  # the image hash enters keys
    return Settings(root=tmp_path, prefix=tmp_path / "prefix", build_dir=tmp_path / "build",
                    cache_dir=tmp_path / "cache")


def test_a_borrowed_directory_is_never_deleted_by_a_reset(tmp_path):
    rs = _recipes(tmp_path)
    s = _settings(tmp_path)
    second = rs["second"]
    borrowed = build.build_dir("first", s)
    borrowed.mkdir(parents=True)
    (borrowed / "Makefile").write_text("all:\n")
    build.stage_dir("second", s).mkdir(parents=True)
    sdir = s.stamps_dir / "steps" / "second"
    for i, name in ((2, "more"), (3, "install")):  # a finished earlier run, another key
        write_json(sdir / f"{name}.json", {"key": "old", "defkey": "d", "step": name, "index": i,
                                           "build": str(borrowed)})
    done = steps.plan_steps(second, s, "new", "d", borrowed, borrowed=2)
    assert done == [True, True, False, False]
    assert (borrowed / "Makefile").exists()
    # the same stamps with the current key (and the stage the reset emptied): all done
    build.stage_dir("second", s).mkdir(parents=True)
    for i, name in ((2, "more"), (3, "install")):
        write_json(sdir / f"{name}.json", {"key": "new", "defkey": "d", "step": name, "index": i,
                                           "build": str(borrowed)})
    assert steps.plan_steps(second, s, "new", "d", borrowed, borrowed=2) == [True] * 4


def test_reusable_only_with_the_owners_current_key(tmp_path):
    rs = _recipes(tmp_path)
    s = _settings(tmp_path)
    second = rs["second"]
    assert steps.reusable_steps(second, rs, s, tmp_path / "src") == 0  # no directory
    bdir = build.build_dir("first", s)
    bdir.mkdir(parents=True)
    key, _ = build.recipe_key("first", rs, s)
    sdir = s.stamps_dir / "steps" / "first"
    for i, name in enumerate(("configure", "build")):
        write_json(sdir / f"{name}.json", {"key": key, "step": name, "index": i})
    assert steps.reusable_steps(second, rs, s, tmp_path / "src") == 2
    write_json(sdir / "running.json", {"key": key, "step": "install", "index": 2})
    assert steps.reusable_steps(second, rs, s, tmp_path / "src") == 0  # first is being built
    (sdir / "running.json").unlink()
    write_json(sdir / "build.json", {"key": "another", "step": "build", "index": 1})
    assert steps.reusable_steps(second, rs, s, tmp_path / "src") == 0


def test_a_directory_no_stamp_vouches_for_is_emptied(tmp_path):
    rs = _recipes(tmp_path)
    s = _settings(tmp_path)
    bdir = build.build_dir("first", s)
    bdir.mkdir(parents=True)
    (bdir / "left-by-second").write_text("x")
    assert steps.plan_steps(rs["first"], s, "k", "d") == [False, False, False]
    assert not bdir.exists()


def test_ccache_environment_and_mounts(tmp_path):
    rs = _recipes(tmp_path)
    s = _settings(tmp_path).replace(ccache=True)
    rec = rs["first"]
    ctx = build.placeholders(rec, s, tmp_path / "src")
    env = build.step_environment(rec, rec.steps[1], s, ctx, 0)
    assert env["PATH"].startswith("/usr/lib/ccache:")
    assert env["CCACHE_DIR"] == str(tmp_path / "cache" / "ccache")
    assert env["CCACHE_BASEDIR"] == str(s.build_dir) and env["CCACHE_NOHASHDIR"] == "1"
    assert "CCACHE_COMPILERCHECK" not in env
    assert env["STAGE_CC_WRAPPER"] == "ccache"  # GCC's target libraries: xgcc through ccache
    env = build.step_environment(rec, rec.steps[1], s, ctx, 0, "c0ffee")
    assert env["CCACHE_COMPILERCHECK"] == "string:c0ffee"
    assert (s.ccache_root, True) in build.mounts_for(rec, s, tmp_path / "src")
    off = _settings(tmp_path)
    env = build.step_environment(rec, rec.steps[1], off, ctx, 0)
    assert "CCACHE_DIR" not in env and "STAGE_CC_WRAPPER" not in env
    assert all(p != off.ccache_root for p, _ in build.mounts_for(rec, off, tmp_path / "src"))


def test_ccache_summary_counts_the_stats_log(tmp_path):
    s = _settings(tmp_path).replace(ccache=True)
    log = build.work_dir("first", s) / "ccache-stats.log"
    log.parent.mkdir(parents=True)
    log.write_text("# /b/x.c\ndirect_cache_hit\n# /b/y.c\npreprocessed_cache_hit\n# /b/z.c\ncache_miss\n"
                   "# /b/conftest\ncalled_for_link\n")
    assert build.ccache_summary("first", s) == "ccache 2 hits, 1 misses"
    assert build.ccache_summary("first", s.replace(ccache=False)) == ""


# --------------------------------------------------------------------------- real podman builds

EXTRA = """\
# libgreet's second half: continues in libgreet's build directory (build_from)
name: greet-archive
version: "1"
description: an archive made from libgreet's objects (test fixture)
image: fixture
depends: [libgreet]
tree_from: libgreet
build_from: libgreet
steps:
  - name: configure
    configure: ["--prefix={prefix}", --disable-dependency-tracking]
  - name: build
    make: []
  - name: archive
    run: [sh, -c, 'rm -f greet-archive.a && ar rcD greet-archive.a greet.o hello.o && pwd > where.txt']
  - name: install
    run: [sh, -c, 'mkdir -p {stage}{prefix}/lib && cp greet-archive.a {stage}{prefix}/lib/']
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("buildfrom")
    ensure_base_image(base)
    w = FixtureWorld(base)
    yield w
    w.close()


def _files(artifact: Path) -> dict[str, str]:
    manifest = cache.read_manifest(artifact)
    return {e["path"]: e.get("sha256", e.get("type", "")) for e in manifest["files"]}


@pytest.mark.podman
def test_second_recipe_continues_in_the_first_ones_directory_or_builds_all_the_same(world, capsys):
    root = world.make_root("reuse")
    (root / "recipes" / "greet-archive.yaml").write_text(EXTRA, encoding="utf-8")
    s = podman_settings(root, world.base / "reuse-ws")
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    capsys.readouterr()
    build.build_all(["greet-archive"], rs, s)
    out = capsys.readouterr().out
    assert "[1/4] greet-archive:configure done already in libgreet's build directory" in out
    assert "[2/4] greet-archive:build done already in libgreet's build directory" in out
    assert "[3/4] greet-archive:archive done in" in out
    lib_build = build.build_dir("libgreet", s)
    assert (lib_build / "where.txt").read_text().strip() == str(lib_build)
    assert not build.step_log("greet-archive", "configure", s).exists()
    key, _ = build.recipe_key("greet-archive", rs, s)
    local, _ = cache.open_caches(s)
    first = world.base / "first-artifact.tar.zst"
    shutil.copy(local.get(key), first)

    # libgreet restored from the artifact cache, no build directory: every step runs here
    local.remove(key)
    shutil.rmtree(s.build_dir)
    shutil.rmtree(s.prefix)
    s.prefix.mkdir()
    capsys.readouterr()
    build.build_all(["greet-archive"], rs, s)
    out = capsys.readouterr().out
    assert "libgreet: restored from the artifact cache" in out
    assert "[1/4] greet-archive:configure done in" in out and "[2/4] greet-archive:build done in" in out
    assert (lib_build / "where.txt").read_text().strip() == str(lib_build)
    second = local.get(key)
    assert _files(second) == _files(first)
    assert _files(second)["lib/greet-archive.a"]
    assert (s.prefix / "lib" / "greet-archive.a").is_file() and (s.prefix / "lib" / "libgreet.a").is_file()

    # the shared steps done here count as libgreet's now: a changed greet-archive continues after them
    (root / "recipes" / "greet-archive.yaml").write_text(
        EXTRA.replace("rm -f greet-archive.a &&", "rm -f greet-archive.a && : changed &&"), encoding="utf-8")
    rs2 = load_recipes(s.recipes_dir, s.patches_dir)
    capsys.readouterr()
    build.build_recipe("greet-archive", rs2, s)
    out = capsys.readouterr().out
    assert "[2/4] greet-archive:build done already in libgreet's build directory" in out, out
    assert "[3/4] greet-archive:archive done in" in out
    rfile = root / "recipes" / "greet-archive.yaml"
    rfile.write_text(EXTRA, encoding="utf-8")
    rs = load_recipes(s.recipes_dir, s.patches_dir)

    # libgreet rebuilt later: it starts from an empty directory, not from greet-archive's leftovers
    libkey, _ = build.recipe_key("libgreet", rs, s)
    local.remove(libkey)
    (s.stamps_dir / "install" / "libgreet.json").unlink()
    capsys.readouterr()
    build.build_recipe("libgreet", rs, s)
    assert "[1/3] libgreet:configure done in" in capsys.readouterr().out
    assert not (lib_build / "where.txt").exists()


@pytest.mark.podman
def test_ccache_hits_survive_another_workspace_path(world, capsys):
    root = world.make_root("ccache")
    ccache_dir = world.base / "ccache-dir"
    s1 = podman_settings(root, world.base / "ccache-ws1", ccache=True, ccache_dir=ccache_dir)
    rs = load_recipes(s1.recipes_dir, s1.patches_dir)
    capsys.readouterr()
    build.build_recipe("libgreet", rs, s1)
    out1 = capsys.readouterr().out
    line1 = next(x for x in out1.splitlines() if x.startswith("libgreet: ccache "))
    misses1 = int(line1.split(", ")[1].split()[0])
    assert misses1 >= 2, line1  # greet.o and hello.o at least
    # another checkout path, an empty artifact cache, the same ccache directory
    s2 = podman_settings(root, world.base / "ccache-ws2-elsewhere", ccache=True, ccache_dir=ccache_dir)
    assert s2.build_dir != s1.build_dir and s2.cache_dir != s1.cache_dir
    capsys.readouterr()
    build.build_recipe("libgreet", rs, s2)
    out2 = capsys.readouterr().out
    line2 = next(x for x in out2.splitlines() if x.startswith("libgreet: ccache "))
    hits2, misses2 = (int(part.split()[0]) for part in line2[len("libgreet: ccache "):].split(", "))
    assert misses2 == 0 and hits2 >= misses1, (line1, line2)


def test_an_unwritable_ccache_dir_is_a_clear_error(tmp_path):
    rs = _recipes(tmp_path)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    s = _settings(tmp_path).replace(ccache=True, ccache_dir=blocker / "ccache")
    with pytest.raises(ConfigError) as err:
        steps.run_steps(rs["first"], rs, s, key="k", defkey="d", src=tmp_path / "src")
    assert err.value.fields["field"] == "ccache_dir" and str(blocker / "ccache") in err.value.why
