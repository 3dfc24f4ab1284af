"""Tests of hermitbuild.build.

Fast unit tests of the resume decisions (step stamps, running marker, incremental),
then the fixture recipe set (tests/fixtures/recipes: an autotools library from a
tarball on a local HTTP server, patched, and a cmake program from a local git
repository) built through the real code path in real podman containers.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hermitbuild import build, cache, cli, container, runner, steps
from hermitbuild.errors import BuildError, HermitBuildError, PreflightError
from hermitbuild.recipe import RecipeSet, load_recipes
from hermitbuild.fsutil import read_json, write_json
from hermitbuild.settings import Settings

from helpers_podman import (GREETER_COMMIT_DATE, ROOT, FixtureWorld, ensure_base_image, host_ip, run_doit, write_dodo,
                            HttpServer, podman_settings, require_podman)


# --------------------------------------------------------------------------- unit: resume decisions

RECIPE = """\
name: demo
version: "1"
image: fixture
incremental: {incremental}
sources:
  - tarball: http://127.0.0.1:9/demo.tar.gz
    sha256: "{sha}"
steps:
  - name: configure
    configure: ["--prefix={{prefix}}"]
  - name: build
    make: []
  - name: install
    make: [install, "DESTDIR={{stage}}"]
"""


def _demo(tmp_path: Path, incremental: bool = False) -> tuple[Settings, RecipeSet]:
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    (root / "recipes" / "demo.yaml").write_text(RECIPE.format(incremental=str(incremental).lower(),
                                                              sha="a" * 64))
    s = Settings(root=root, prefix=tmp_path / "prefix", build_dir=tmp_path / "build")
    return s, load_recipes(s.recipes_dir, s.patches_dir)


def _stamp(s: Settings, step: str, index: int, key: str, defkey: str = "d") -> None:
    write_json(build._steps_dir("demo", s) / f"{step}.json",
                      {"key": key, "defkey": defkey, "step": step, "index": index})


def _running(s: Settings, step: str, index: int, key: str = "k") -> None:
    write_json(build._steps_dir("demo", s) / "running.json",
                      {"key": key, "defkey": "d", "step": step, "index": index})


def _with_build_dir(s: Settings) -> Path:
    d = build.build_dir("demo", s)
    d.mkdir(parents=True)
    build.stage_dir("demo", s).mkdir(parents=True)
    (d / "Makefile").write_text("all:\n")
    return d


def test_finished_steps_are_kept_and_an_interrupted_make_reruns_in_place(tmp_path):
    s, rs = _demo(tmp_path)
    d = _with_build_dir(s)
    _stamp(s, "configure", 0, "k")
    _running(s, "build", 1)
    assert build._plan_steps(rs["demo"], s, "k", "d") == [True, False, False]
    assert (d / "Makefile").exists(), "the build dir of an interrupted make step is kept"


def test_interrupted_configure_restarts_from_a_clean_build_dir(tmp_path):
    s, rs = _demo(tmp_path)
    d = _with_build_dir(s)
    _running(s, "configure", 0)
    assert build._plan_steps(rs["demo"], s, "k", "d") == [False, False, False]
    assert not d.exists()


def test_changed_inputs_restart_from_a_clean_build_dir(tmp_path):
    s, rs = _demo(tmp_path)
    d = _with_build_dir(s)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "old", defkey="old-def")
    assert build._plan_steps(rs["demo"], s, "new", "d") == [False, False, False]
    assert not d.exists()
    assert not list(build._steps_dir("demo", s).glob("*.json"))


def test_all_done_with_the_same_key(tmp_path):
    s, rs = _demo(tmp_path)
    _with_build_dir(s)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "k")
    assert build._plan_steps(rs["demo"], s, "k", "d") == [True, True, True]


def test_missing_build_dir_or_stage_invalidates_stamps(tmp_path):
    s, rs = _demo(tmp_path)
    for i, step in enumerate(("configure", "build")):
        _stamp(s, step, i, "k")
    assert build._plan_steps(rs["demo"], s, "k", "d") == [False, False, False]
    d = _with_build_dir(s)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "k")
    build.stage_dir("demo", s).rmdir()
    assert build._plan_steps(rs["demo"], s, "k", "d") == [False, False, False]
    assert not d.exists()


def test_incremental_tree_change_keeps_build_dir_and_skips_configure(tmp_path):
    s, rs = _demo(tmp_path, incremental=True)
    d = _with_build_dir(s)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "old", defkey="same")
    assert build._plan_steps(rs["demo"], s, "new", "same") == [True, False, False]
    assert (d / "Makefile").exists()
    # ... but a changed definition (not only the tree) starts over
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "old", defkey="other")
    assert build._plan_steps(rs["demo"], s, "new", "same") == [False, False, False]
    assert not d.exists()


def _finished(s: Settings, key: str, defkey: str, marker: str) -> Path:
    d = build.build_dir("demo", s)
    d.mkdir(parents=True, exist_ok=True)
    build.stage_dir("demo", s).mkdir(parents=True, exist_ok=True)
    (d / "Makefile").write_text(marker)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, key, defkey=defkey)
    return d


def test_a_definition_built_before_gets_its_parked_build_dir_back(tmp_path):
    """A (syscall table T1) built; a dependency changes (definition B, a full build); the
    dependency is put back (A's artifact comes from the cache) and the table changes: the
    build of A, parked when B started, is back and only make runs in it."""
    s, rs = _demo(tmp_path, incremental=True)
    d = _finished(s, "A-T1", "A", "built for A\n")
    assert build._plan_steps(rs["demo"], s, "B-T1", "B") == [False, False, False]
    assert not d.exists(), "B starts from an empty build directory"
    steps.wait_discards()
    _finished(s, "B-T1", "B", "built for B\n")
    assert build._plan_steps(rs["demo"], s, "A-T2", "A") == [True, False, False]
    assert (d / "Makefile").read_text() == "built for A\n"
    stamp = read_json(build._steps_dir("demo", s) / "configure.json")
    assert (stamp["key"], stamp["defkey"]) == ("A-T2", "A")
    assert steps.was_incremental(rs["demo"], s, "A-T2")
    # B is parked now; a third definition parks A and B's slot goes: one slot per recipe
    _finished(s, "A-T2", "A", "built for A\n")
    assert build._plan_steps(rs["demo"], s, "C-T2", "C") == [False, False, False]
    steps.wait_discards()
    slots = build.work_dir("demo", s) / "parked"
    assert sorted(p.name for p in slots.iterdir()) == ["A"]


def test_an_unfinished_or_non_incremental_build_is_not_parked(tmp_path):
    s, rs = _demo(tmp_path, incremental=True)
    d = _finished(s, "A-T1", "A", "built for A\n")
    (build._steps_dir("demo", s) / "install.json").unlink()  # install never finished
    assert build._plan_steps(rs["demo"], s, "B-T1", "B") == [False, False, False]
    steps.wait_discards()
    assert not (build.work_dir("demo", s) / "parked" / "A").exists() and not d.exists()
    # ... and an unfinished build makes way for a parked one of the definition asked for
    _finished(s, "B-T1", "B", "built for B\n")
    assert build._plan_steps(rs["demo"], s, "C-T1", "C") == [False, False, False]  # B parked
    steps.wait_discards()
    _finished(s, "C-T1", "C", "half built for C\n")
    (build._steps_dir("demo", s) / "install.json").unlink()
    assert build._plan_steps(rs["demo"], s, "B-T2", "B") == [True, False, False]
    assert (build.build_dir("demo", s) / "Makefile").read_text() == "built for B\n"
    s2, rs2 = _demo(tmp_path / "plain", incremental=False)
    d2 = _finished(s2, "A-T1", "A", "built for A\n")
    assert build._plan_steps(rs2["demo"], s2, "B-T1", "B") == [False, False, False]
    steps.wait_discards()
    assert not (build.work_dir("demo", s2) / "parked").exists() and not d2.exists()


def test_a_step_marked_incremental_skip_is_left_out_of_an_incremental_rebuild_only(tmp_path):
    s, rs = _demo(tmp_path, incremental=True)
    rfile = s.recipes_dir / "demo.yaml"
    rfile.write_text(rfile.read_text().replace("    make: []\n", "    make: []\n    incremental: skip\n"))
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    d = _with_build_dir(s)
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "old", defkey="same")
    # the tree changed: configure kept, the build step left to `make install`
    assert build._plan_steps(rs["demo"], s, "new", "same") == [True, True, False]
    stamp = read_json(build._steps_dir("demo", s) / "build.json")
    assert stamp["key"] == "new" and stamp["incremental"] is True
    assert (d / "Makefile").exists()
    assert steps.was_incremental(rs["demo"], s, "new") and not steps.was_incremental(rs["demo"], s, "old")
    # a changed definition: a full build, every step runs
    for i, step in enumerate(("configure", "build", "install")):
        _stamp(s, step, i, "old", defkey="other")
    assert build._plan_steps(rs["demo"], s, "new", "same") == [False, False, False]
    assert not steps.was_incremental(rs["demo"], s, "new")
    # and the field is part of the recipe's definition (only when set: others keep their keys)
    from hermitbuild.cache.keys import recipe_definition
    defined = recipe_definition(rs["demo"])["steps"]
    assert defined[1]["incremental"] == "skip" and "incremental" not in defined[0]


def test_placeholders_and_environment(tmp_path):
    s, rs = _demo(tmp_path)
    rec = rs["demo"]
    ctx = build.placeholders(rec, s, tmp_path / "src")
    assert ctx["src"] == str(tmp_path / "src") and ctx["stage"].endswith("work/demo/stage")
    assert ctx["install"] == str(s.prefix)
    env = build.step_environment(rec, rec.steps[1], s, ctx, 123)
    assert env["SOURCE_DATE_EPOCH"] == "123"
    assert env["PATH"].startswith(f"{s.prefix}/bin:{s.tools}/bin:")
    mounts = build.mounts_for(rec, s, tmp_path / "src")
    assert (tmp_path / "src", False) in mounts and (build.work_dir("demo", s), True) in mounts
    assert (s.prefix, False) in mounts and all(p != s.tools for p, _ in mounts)  # tools is inside prefix


# --------------------------------------------------------------------------- real podman builds

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("buildworld")
    ensure_base_image(base)
    w = FixtureWorld(base)
    yield w
    w.close()


def _setup(world: FixtureWorld, name: str, extra=(), **changes) -> tuple[Settings, RecipeSet]:
    root = world.make_root(name, extra)
    s = podman_settings(root, world.base / (name + "-ws"), **changes)
    return s, load_recipes(s.recipes_dir, s.patches_dir)


@pytest.fixture(scope="module")
def built(world):
    """The fixture set built once (libgreet, then greeter)."""
    s, rs = _setup(world, "main")
    build.build_all(["greeter"], rs, s)
    return s, rs


@pytest.mark.podman
def test_fixture_set_builds_installs_and_runs(built):
    s, rs = built
    prefix = s.prefix
    for rel in ("include/greet.h", "lib/libgreet.a", "bin/greet-hello", "bin/greeter"):
        assert (prefix / rel).is_file(), rel
    out = subprocess.run([str(prefix / "bin" / "greeter"), "doit"], capture_output=True, text=True,
                         check=True).stdout
    # "!" comes from tests/fixtures/patches/libgreet/0001-greet-exclaim.patch; the epoch is the
    # committer date of the greeter git commit (SOURCE_DATE_EPOCH)
    assert out.strip() == f"Hello, doit! (greeter built at epoch {GREETER_COMMIT_DATE})"
    out = subprocess.run([str(prefix / "bin" / "greet-hello")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "Hello, world!"
    for name in ("libgreet", "greeter"):
        assert build.is_installed(name, rs, s)
        key, _ = build.recipe_key(name, rs, s)
        local, _ = cache.open_caches(s)
        assert local.has(key), "the artifact is in the local cache"
        for step in rs[name].steps:
            assert build.step_log(name, step.name, s).stat().st_size > 0


@pytest.mark.podman
def test_build_leaves_only_files_of_the_invoking_user(built):
    s, _ = built
    for top in (s.work_dir, s.prefix, s.logs_dir):
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), os.path.join(dirpath, n)


@pytest.mark.podman
def test_second_run_does_nothing_and_calls_no_command(built, monkeypatch, capsys):
    s, rs = built
    calls: list = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: calls.append(a) or pytest.fail(f"ran {a}"))
    real_popen = subprocess.Popen

    def no_process(*a, **k):  # anything else: git, a runtime, a compiler
        calls.append(a)
        return real_popen(*a, **k)

    monkeypatch.setattr(subprocess, "Popen", no_process)
    capsys.readouterr()
    build.build_all(["greeter"], rs, s)
    assert calls == []
    assert capsys.readouterr().out == ""
    assert all(build.is_installed(n, rs, s) for n in rs.order)


@pytest.mark.podman
def test_deleted_prefix_is_restored_from_the_cache_without_building(built, monkeypatch, capsys):
    s, rs = built
    (s.prefix / "bin" / "greeter").unlink()
    assert not build.is_installed("greeter", rs, s)
    monkeypatch.setattr(container, "run_in_container", lambda *a, **k: pytest.fail("built again"))
    build.build_recipe("greeter", rs, s)
    assert "restored from the artifact cache" in capsys.readouterr().out
    assert (s.prefix / "bin" / "greeter").is_file()


@pytest.mark.podman
def test_failing_step_reports_recipe_step_command_log_and_tail(world):
    s, rs = _setup(world, "fail", extra=["broken"])
    build.build_recipe("libgreet", rs, s)
    with pytest.raises(BuildError) as exc:
        build.build_recipe("broken", rs, s)
    err = exc.value
    log = build.step_log("broken", "compile", s)
    assert (err.recipe, err.step, err.log_path) == ("broken", "compile", str(log))
    assert err.command[:2] == ["sh", "-c"] and err.returncode not in (0, None)
    text = str(err)
    assert "recipe 'broken', step 'compile'" in text and str(log) in text
    assert "cc -c bad.c" in text and "error" in text
    tail = err.tail.splitlines()
    assert len(tail) == 40 and "noise line 60" in err.tail and "noise line 20\n" not in err.tail + "\n"
    assert log.is_file() and "noise line 1\n" in log.read_text()
    # the doit action turns it into a clean task failure (no traceback)
    failed = cli.action(cli.do_build, s, "broken")
    assert failed is not None and "step 'compile'" in str(failed) and "Traceback" not in str(failed)


def _kill_when_started(marker: Path, kill) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not marker.exists():
            time.sleep(0.2)
        time.sleep(0.5)
        kill()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _containers(prefix: str) -> str:
    return runner.output(["podman", "ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}"])


def _assert_resumed(s: Settings, out: str) -> None:
    bdir = build.build_dir("sleeper", s)
    assert "[1/4] sleeper:configure already done" in out
    assert "[2/4] sleeper:count already done" in out
    assert "[3/4] sleeper:slow done in" in out and "[4/4] sleeper:install done in" in out
    assert (bdir / "count-runs").read_text().splitlines() == ["run"], "finished steps are not redone"
    assert len((bdir / "slow-attempts").read_text().splitlines()) == 2
    assert (s.prefix / "sleeper" / "bin" / "greet-hello").is_file()


@pytest.mark.podman
def test_killed_container_then_rerun_continues_from_the_unfinished_step(world, capsys):
    s, rs = _setup(world, "killed", extra=["sleeper"])
    build.build_recipe("libgreet", rs, s)
    marker = build.build_dir("sleeper", s) / "slow-started"

    def kill() -> None:
        for name in _containers("hermitbuild-sleeper-slow").split():
            runner.run(["podman", "kill", name], check=False)

    _kill_when_started(marker, kill)
    with pytest.raises(BuildError) as exc:
        build.build_recipe("sleeper", rs, s)
    assert exc.value.step == "slow"
    capsys.readouterr()
    build.build_recipe("sleeper", rs, s)
    _assert_resumed(s, capsys.readouterr().out)


@pytest.mark.podman
def test_files_a_new_version_no_longer_installs_leave_the_prefix(world):
    """Version 1 of libgreet also installs share/libgreet/{old.txt,keep.txt}; version 2 does not.
    After building version 2, old.txt and its empty directory are gone, while keep.txt stays
    because another recipe's install stamp also lists it; everything else is still there."""
    extra = ('  - name: extra\n'
             '    run: [sh, -c, "mkdir -p {stage}{prefix}/share/libgreet && echo old > '
             '{stage}{prefix}/share/libgreet/old.txt"]\n')
    root = world.make_root("stale")
    rfile = root / "recipes" / "libgreet.yaml"
    v2 = rfile.read_text()
    rfile.write_text(v2.replace('version: "1.0"', 'version: "0.9"') + extra)
    s = podman_settings(root, world.base / "stale-ws")
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    old = s.prefix / "share" / "libgreet" / "old.txt"
    assert old.read_text() == "old\n"
    other = s.prefix / "share" / "other.txt"   # claimed by another recipe too: must stay
    other.write_text("shared\n")
    write_json(build._install_stamp("libgreet", s), {
        **read_json(build._install_stamp("libgreet", s)),
        "files": read_json(build._install_stamp("libgreet", s))["files"] + ["share/other.txt"]})
    write_json(build._install_stamp("greeter", s), {"root": str(s.prefix), "files": ["share/other.txt"],
                                                          "key": "0" * 64})
    rfile.write_text(v2)
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    assert not old.exists() and not old.parent.exists()
    assert other.read_text() == "shared\n"
    for rel in ("include/greet.h", "lib/libgreet.a", "bin/greet-hello"):
        assert (s.prefix / rel).is_file(), rel
    stamp = read_json(build._install_stamp("libgreet", s))
    assert "share/libgreet/old.txt" not in stamp["files"]


@pytest.mark.podman
def test_step_timeout_kills_a_hung_step_which_the_rerun_redoes(world, capsys):
    """The slow step hangs on its first attempt: with step_timeout it is killed, its container
    removed, and the error says what happened and what to do; the next run redoes that step only."""
    s, rs = _setup(world, "timeout", extra=["sleeper"], step_timeout="40s")
    build.build_recipe("libgreet", rs, s)
    start = time.monotonic()
    with pytest.raises(BuildError) as exc:
        build.build_recipe("sleeper", rs, s)
    assert time.monotonic() - start < 200, "the hung step was not killed at the timeout"
    text = str(exc.value)
    assert exc.value.step == "slow" and "killed after the step_timeout of 40s" in text
    assert "raise step_timeout" in text and str(build.step_log("sleeper", "slow", s)) in text
    assert "TIMED OUT after" in capsys.readouterr().out
    labels = build.container_labels("sleeper", s)
    filters = [f"--filter=label={k}={v}" for k, v in labels.items()]
    assert runner.output(["podman", "ps", "-a", "-q", *filters]) == ""
    build.build_recipe("sleeper", rs, s.replace(step_timeout="0"))
    _assert_resumed(s, capsys.readouterr().out)


SCRIPT = """\
import signal
import sys
# a shell that started the suite in the background leaves SIGINT ignored, and Python then
# installs no handler of its own: restore it, as a terminal's Ctrl-C would find it
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = [{root!r}, {tests!r}]
from helpers_podman import podman_settings
from hermitbuild import build
from hermitbuild.recipe import load_recipes
from pathlib import Path
s = podman_settings(Path({sroot!r}), Path({ws!r}))
build.build_recipe("sleeper", load_recipes(s.recipes_dir, s.patches_dir), s)
"""


@pytest.mark.podman
def test_ctrl_c_leaves_no_container_and_rerun_continues(world, capsys):
    s, rs = _setup(world, "ctrlc", extra=["sleeper"])
    build.build_recipe("libgreet", rs, s)
    script = world.base / "ctrlc.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), sroot=str(s.root),
                                    ws=str(s.build_dir.parent)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    marker = build.build_dir("sleeper", s) / "slow-started"
    _kill_when_started(marker, lambda: proc.send_signal(signal.SIGINT))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "KeyboardInterrupt" in out
    assert "[2/4] sleeper:count done" in out
    assert _containers("hermitbuild-sleeper") == "", "no container is left running"
    running = json.loads((build._steps_dir("sleeper", s) / "running.json").read_text())
    assert running["step"] == "slow"
    capsys.readouterr()
    build.build_recipe("sleeper", rs, s)
    _assert_resumed(s, capsys.readouterr().out)


@pytest.mark.podman
def test_steps_have_no_network_and_run_as_the_invoking_user(world):
    ip = host_ip()
    if ip.startswith("127."):
        pytest.skip("this host has no non-loopback address to probe")
    served = world.base / "net-served"
    served.mkdir(exist_ok=True)
    server = HttpServer(served, host="0.0.0.0")
    try:
        root = world.make_root("net", ["netcheck"],
                               values={"netcheck": {"@HOSTPORT@": f"{ip}/{server.port}"}})
        s = podman_settings(root, world.base / "net-ws")
        rs = load_recipes(s.recipes_dir, s.patches_dir)
        build.build_all(["netcheck"], rs, s)
    finally:
        server.close()
    assert (s.prefix / "netcheck" / "interfaces").read_text().split() == ["lo"]
    assert (s.prefix / "netcheck" / "uid").read_text().strip() == str(os.getuid())
    assert "isolated" in build.step_log("netcheck", "probe", s).read_text()


@pytest.mark.podman
def test_changed_patch_rebuilds_only_what_depends_on_it(world, capsys):
    s, rs = _setup(world, "rebuild")
    build.build_all(["greeter"], rs, s)
    old = {n: build.recipe_key(n, rs, s)[0] for n in rs.order}
    patch = s.patches_dir / "libgreet" / "0001-greet-exclaim.patch"
    patch.write_text(patch.read_text().replace('"Hello, %s!"', '"Hello, %s!!"'))
    rs2 = load_recipes(s.recipes_dir, s.patches_dir)
    assert not build.is_installed("libgreet", rs2, s) and not build.is_installed("greeter", rs2, s)
    capsys.readouterr()
    build.build_all(["greeter"], rs2, s)
    out = capsys.readouterr().out
    assert "[1/3] libgreet:configure done" in out and "[1/3] greeter:cmake done" in out
    assert {n: build.recipe_key(n, rs2, s)[0] for n in rs2.order} != old
    res = subprocess.run([str(s.prefix / "bin" / "greeter")], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("Hello, hermit!!")


# --------------------------------------------------------------------------- through doit (real task wiring)

@pytest.mark.podman
def test_doit_parallel_toolchain_then_noop(world):
    root = world.make_root("doit")
    write_dodo(root, world.base / "doit-ws")
    first = run_doit(root, "-n", "2", "toolchain")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[3/3] libgreet:install done" in first.stdout and "[3/3] greeter:install done" in first.stdout
    assert first.stdout.index("libgreet: installed") < first.stdout.index("[1/3] greeter:cmake")
    second = run_doit(root, "toolchain")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "-- build:libgreet" in second.stdout and "-- build:greeter" in second.stdout
    assert "done in" not in second.stdout and "restored" not in second.stdout
    out = subprocess.run([str(world.base / "doit-ws" / "prefix" / "bin" / "greeter")], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("Hello, hermit!")


@pytest.mark.podman
def test_doit_failing_step_exits_nonzero_with_the_report(world):
    root = world.make_root("doit-fail", ["broken"])
    ws = world.base / "doit-fail-ws"
    write_dodo(root, ws)
    done = run_doit(root, "build:broken")
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert "build failed: recipe 'broken', step 'compile'" in text
    assert str(ws / "build" / "logs" / "broken" / "compile.log") in text
    assert "cc -c bad.c" in text and "noise line 60" in text and "Traceback" not in text


def _incremental_libgreet(world, capsys, name: str, skip_build: bool):
    """libgreet built once as an incremental recipe, then its patch changed and built again:
    (settings, recipes, build dir, mtimes of greet.o/hello.o/config.status before, output)."""
    root = world.make_root(name)
    rfile = root / "recipes" / "libgreet.yaml"
    text = rfile.read_text().replace("image: fixture\n", "image: fixture\nincremental: true\n")
    if skip_build:
        text = text.replace("    make: []\n", "    make: []\n    incremental: skip\n")
    rfile.write_text(text)
    s = podman_settings(root, world.base / f"{name}-ws")
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    build.build_recipe("libgreet", rs, s)
    bdir = build.build_dir("libgreet", s)
    before = {n: (bdir / n).stat().st_mtime_ns for n in ("greet.o", "hello.o", "config.status")}
    time.sleep(1.1)
    patch = s.patches_dir / "libgreet" / "0001-greet-exclaim.patch"
    patch.write_text(patch.read_text().replace('"Hello, %s!"', '"Hello, %s?"'))
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    capsys.readouterr()
    build.build_recipe("libgreet", rs, s)
    return s, rs, bdir, before, capsys.readouterr().out


@pytest.mark.podman
def test_incremental_recipe_rebuilds_only_changed_files(world, capsys):
    s, rs, bdir, before, out = _incremental_libgreet(world, capsys, "incremental", skip_build=False)
    assert "[1/3] libgreet:configure already done" in out and "[2/3] libgreet:build done" in out
    after = {n: (bdir / n).stat().st_mtime_ns for n in before}
    assert after["config.status"] == before["config.status"], "configure was not re-run"
    assert after["hello.o"] == before["hello.o"], "an unchanged source was not recompiled"
    assert after["greet.o"] != before["greet.o"], "the changed source was recompiled"
    res = subprocess.run([str(s.prefix / "bin" / "greet-hello")], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "Hello, world?"


@pytest.mark.podman
def test_incremental_rebuild_leaves_a_skip_step_to_make_install_and_equals_a_clean_build(world, capsys):
    """`incremental: skip` on the build step: after a source change only `make install` runs
    (it builds the changed object first), and what it installs is what a clean build installs."""
    s, rs, bdir, before, out = _incremental_libgreet(world, capsys, "incskip", skip_build=True)
    root = s.root
    assert "[1/3] libgreet:configure already done" in out
    assert "[2/3] libgreet:build left out of this incremental rebuild" in out
    assert "[3/3] libgreet:install done" in out
    assert steps.was_incremental(rs["libgreet"], s, build.recipe_key("libgreet", rs, s)[0])
    after = {n: (bdir / n).stat().st_mtime_ns for n in before}
    assert after["config.status"] == before["config.status"] and after["hello.o"] == before["hello.o"]
    assert after["greet.o"] != before["greet.o"], "make install did not rebuild the changed object"
    res = subprocess.run([str(s.prefix / "bin" / "greet-hello")], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "Hello, world?"

    clean = podman_settings(root, world.base / "incskip-clean-ws")
    build.build_recipe("libgreet", rs, clean)

    def installed(prefix: Path, copies: Path) -> dict[str, tuple[bytes, int]]:
        """Each installed file's bytes and mode; binaries without their debug sections and build
        id (they name the build directory, which differs between the two workspaces)."""
        out = {}
        for p in sorted(prefix.rglob("*")):
            if not p.is_file() or p.is_symlink():
                continue
            data = p.read_bytes()
            if data.startswith((b"\x7fELF", b"!<arch>")):
                copy = copies / p.name
                copies.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, copy)
                runner.run(["strip", "--strip-debug", "--remove-section=.note.gnu.build-id", str(copy)],
                           capture=True)
                data = copy.read_bytes()
            out[str(p.relative_to(prefix))] = (data, p.stat().st_mode)
        return out
    assert installed(s.prefix, world.base / "incskip-a") == installed(clean.prefix, world.base / "incskip-b")


@pytest.mark.podman
def test_a_definition_put_back_rebuilds_incrementally_in_its_parked_build_dir(world, capsys):
    """Real podman: libgreet (incremental) built; its definition changed (a new env entry: a full
    build in an empty directory) and put back (restored from the cache); then its tree changes:
    configure is not run again and only the changed object is compiled, in the directory of the
    first build."""
    root = world.make_root("park")
    rfile = root / "recipes" / "libgreet.yaml"
    original = rfile.read_text().replace("image: fixture\n", "image: fixture\nincremental: true\n")
    rfile.write_text(original)
    s = podman_settings(root, world.base / "park-ws")
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    bdir = build.build_dir("libgreet", s)
    first = {n: (bdir / n).stat().st_mtime_ns for n in ("greet.o", "hello.o", "config.status")}
    rfile.write_text(original.replace("steps:\n", "env:\n  GREET_FLAVOUR: other\nsteps:\n"))
    capsys.readouterr()
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    assert "[1/3] libgreet:configure done" in capsys.readouterr().out, "another definition: a full build"
    rfile.write_text(original)
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    assert "restored from the artifact cache" in capsys.readouterr().out
    time.sleep(1.1)
    patch = s.patches_dir / "libgreet" / "0001-greet-exclaim.patch"
    patch.write_text(patch.read_text().replace('"Hello, %s!"', '"Hello, %s?"'))
    build.build_recipe("libgreet", load_recipes(s.recipes_dir, s.patches_dir), s)
    out = capsys.readouterr().out
    assert "[1/3] libgreet:configure already done" in out and "[2/3] libgreet:build done" in out
    after = {n: (bdir / n).stat().st_mtime_ns for n in first}
    assert after["config.status"] == first["config.status"] and after["hello.o"] == first["hello.o"]
    assert after["greet.o"] != first["greet.o"]
    res = subprocess.run([str(s.prefix / "bin" / "greet-hello")], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "Hello, world?"


@pytest.mark.podman
def test_container_left_by_a_killed_client_is_removed_before_the_rerun(world, capsys):
    s, rs = _setup(world, "sigkill", extra=["sleeper"])
    build.build_recipe("libgreet", rs, s)
    script = world.base / "sigkill.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), sroot=str(s.root),
                                    ws=str(s.build_dir.parent)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = build.build_dir("sleeper", s) / "slow-started"
    _kill_when_started(marker, proc.kill).join(timeout=300)
    proc.wait(timeout=60)
    labels = build.container_labels("sleeper", s)
    filters = [f"--filter=label={k}={v}" for k, v in labels.items()]
    leftover = runner.output(["podman", "ps", "-q", *filters])
    assert leftover, "the killed client's container is still running (the situation under test)"
    capsys.readouterr()
    build.build_recipe("sleeper", rs, s)
    _assert_resumed(s, capsys.readouterr().out)
    assert runner.output(["podman", "ps", "-a", "-q", *filters]) == ""


@pytest.mark.podman
def test_runtime_failure_points_at_runtime_options(world):
    """Without the host's runtime options podman cannot start containers here: say so clearly."""
    s, rs = _setup(world, "noopts", runtime_options=())
    probe = runner.run(["podman", "run", "--rm", container.image_tag("fixture", s), "true"], check=False,
                       capture=True)
    if probe.returncode == 0:
        pytest.skip("podman runs containers without extra options on this host")
    with pytest.raises(PreflightError) as exc:  # the pre-flight's real container run catches it
        build.build_recipe("libgreet", rs, s)
    text = str(exc.value)
    assert "[FAIL] container run" in text and "fix:" in text
    assert not (s.build_dir / "src").exists()  # before anything was prepared


def test_syscall_change_keeps_newlib_incremental_although_the_kernel_below_changed(tmp_path):
    """newlib (incremental) depends on the kernel, whose tree the table also changes: its
    definition key must stay put (one make in the build dir), its full key must not."""
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True)
    (root / "syscalls").mkdir()
    for name, extra in (("kern", "syscalls: kernel\n"),
                        ("nlib", "syscalls: newlib\nincremental: true\ndepends: [kern]\n")):
        (root / "recipes" / f"{name}.yaml").write_text(
            f'name: {name}\nversion: "1"\nimage: fixture\n{extra}sources:\n'
            f"  - git: https://example.org/{name}.git\n    commit: {'a' * 40}\n"
            "steps:\n  - name: build\n    make: []\n")
    (root / "containers").mkdir()
    (root / "containers" / "Containerfile.fixture").write_text("FROM scratch\n")
    table = root / "syscalls" / "table.yaml"
    table.write_text("syscalls: []\n")
    s = Settings(root=root, prefix=tmp_path / "prefix", build_dir=tmp_path / "build")
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    before = build.recipe_key("nlib", rs, s)[0], build.definition_key("nlib", rs, s)
    kern_before = build.recipe_key("kern", rs, s)[0]
    table.write_text("syscalls:\n  - name: rename\n    returns: int\n"
                     "    params: [const char *oldpath, const char *newpath]\n"
                     "    kernel: {stub: 0}\n    newlib: reentrant\n    header: stdio.h\n")
    after = build.recipe_key("nlib", rs, s)[0], build.definition_key("nlib", rs, s)
    assert after[0] != before[0] and build.recipe_key("kern", rs, s)[0] != kern_before
    assert after[1] == before[1]


@pytest.mark.podman
def test_two_recipes_installing_the_same_file_is_refused_until_one_drops_it(world):
    """Like dpkg's "trying to overwrite ..., which is also in package ...": the second recipe
    to install share/shared.txt is refused (naming both and the fix), nothing of it is
    installed; with drop_files in one of them, the prefix no longer depends on the order."""
    s, rs = _setup(world, "dup", extra=["dupa", "dupb"])
    build.build_recipe("dupa", rs, s)
    with pytest.raises(HermitBuildError) as exc:
        build.build_recipe("dupb", rs, s)
    err = exc.value
    assert (err.recipe, err.other, err.shared) == ("dupb", "dupa", ["share/shared.txt"])
    assert "drop_files: [share/shared.txt]" in err.fix and "Traceback" not in str(err)
    assert (s.prefix / "share" / "shared.txt").read_text() == "from-a\n"
    assert not (s.prefix / "share" / "b.txt").exists(), "a refused install left files behind"

    root = world.make_root("dup-drop", ["dupa", "dupb"],
                           values={"dupb": {"# @DROP@": "drop_files: [share/shared.txt]"}})
    s2 = podman_settings(root, world.base / "dup-drop-ws")
    rs2 = load_recipes(s2.recipes_dir, s2.patches_dir)
    build.build_recipe("dupb", rs2, s2)  # the other order this time: dupb first, then dupa
    build.build_recipe("dupa", rs2, s2)
    assert (s2.prefix / "share" / "shared.txt").read_text() == "from-a\n"
    assert (s2.prefix / "share" / "b.txt").read_text() == "b\n"
    # reinstalling dupb alone (a changed key would do the same) does not take the file back
    (s2.stamps_dir / "install" / "dupb.json").unlink()
    build.build_recipe("dupb", rs2, s2)
    assert (s2.prefix / "share" / "shared.txt").read_text() == "from-a\n"



@pytest.mark.podman
def test_a_recipe_that_replaces_a_dependency_may_install_its_files_again(world):
    """A final build over a bootstrap one (gcc over gcc-stage1, hermit over hermit-bootstrap):
    `replaces:` names the earlier recipe, the later one's copies are kept, nothing is refused."""
    root = world.make_root("dup-replace", ["dupa", "dupb"],
                           values={"dupb": {"# @DROP@": "depends: [dupa]\nreplaces: [dupa]"}})
    s = podman_settings(root, world.base / "dup-replace-ws")
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    build.build_all(["dupb"], rs, s)
    assert (s.prefix / "share" / "shared.txt").read_text() == "from-b\n"
    assert (s.prefix / "share" / "a.txt").is_file() and (s.prefix / "share" / "b.txt").is_file()
    assert build.is_installed("dupa", rs, s) and build.is_installed("dupb", rs, s)


KERN_RECIPE = """name: kern
version: "1"
image: fixture
syscalls: kernel
incremental: true
sources:
  - git: https://example.org/libhermit.git
    commit: "{commit}"
steps:
  - name: cmake
    cmake: []
  - name: build
    make: []
  - name: install
    run: [sh, -c, "mkdir -p {{stage}}{{install}}/lib && cp libhermit.a {{stage}}{{install}}/lib/ && cp -r {{src}}/include {{stage}}{{install}}/"]
"""


def _symbols(archive: Path) -> list[str]:
    out = runner.output(["nm", "--defined-only", "-g", str(archive)])
    return sorted(line for line in out.splitlines() if line and not line.endswith(":"))


@pytest.mark.podman
def test_incremental_cmake_rebuild_after_a_table_change_equals_a_clean_build(world, capsys):
    """The libhermit fixture (cmake, sources by glob): the syscall table gains two calls, whose
    kernel code is a new file.  The kept build directory re-runs cmake (which picks the new
    file up), compiles only that file (the prototypes are in a header of their own, which only
    it includes), and installs what a from-scratch build installs."""
    root = world.make_root("kinc")
    (root / "recipes" / "kern.yaml").write_text(KERN_RECIPE.format(commit="a" * 40))
    (root / "syscalls").mkdir()
    table = root / "syscalls" / "table.yaml"
    table.write_text("syscalls: []\n")
    tree = ROOT / "tests" / "fixtures" / "trees" / "hermit"
    s = podman_settings(root, world.base / "kinc-ws", overrides={"kern": tree})
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    build.build_recipe("kern", rs, s)
    bdir = build.build_dir("kern", s)

    def obj(name: str) -> Path | None:
        return next(bdir.rglob(name), None)

    untouched = obj("sys_arch.c.o")
    before = untouched.stat().st_mtime_ns, obj("main.c.o").stat().st_mtime_ns
    assert obj("syscalls_generated.c.o") is None
    time.sleep(1.1)
    table.write_text((ROOT / "syscalls" / "examples.yaml").read_text())
    capsys.readouterr()
    build.build_recipe("kern", rs, s)
    out = capsys.readouterr().out
    assert "[1/3] kern:cmake done" in out and "[2/3] kern:build done" in out
    assert untouched.stat().st_mtime_ns == before[0], "a file the change does not reach was recompiled"
    assert obj("main.c.o").stat().st_mtime_ns == before[1], (
        "main.c includes syscall.h, which a table change leaves alone (the prototypes have their own header)")
    assert obj("syscalls_generated.c.o") is not None, "cmake did not pick the new generated file up"
    assert read_json(build._steps_dir("kern", s) / "cmake.json")["key"] == build.recipe_key("kern", rs, s)[0]

    # a body changes: the same files, so cmake's globs find the same and the cmake step is left
    # out; make still recompiles the changed generated file
    generated = obj("syscalls_generated.c.o").stat().st_mtime_ns
    time.sleep(1.1)
    table.write_text((ROOT / "syscalls" / "examples.yaml").read_text().replace("return x + 42;",
                                                                               "return x * 2;"))
    capsys.readouterr()
    build.build_recipe("kern", rs, s)
    out = capsys.readouterr().out
    assert "[1/3] kern:cmake left out of this incremental rebuild (no file was added" in out
    assert "[2/3] kern:build done" in out
    assert obj("syscalls_generated.c.o").stat().st_mtime_ns != generated
    assert untouched.stat().st_mtime_ns == before[0]

    clean = podman_settings(root, world.base / "kinc-clean-ws", overrides={"kern": tree})
    build.build_recipe("kern", rs, clean)
    lib, clean_lib = s.prefix / "lib" / "libhermit.a", clean.prefix / "lib" / "libhermit.a"
    assert "sys_my_syscall" in " ".join(_symbols(lib)) and "sys_rename" in " ".join(_symbols(lib))
    assert _symbols(lib) == _symbols(clean_lib)

    def installed(prefix: Path) -> dict[str, bytes]:
        return {str(p.relative_to(prefix)): p.read_bytes() for p in sorted(prefix.rglob("*"))
                if p.is_file() and p.name != "libhermit.a"}
    assert installed(s.prefix) == installed(clean.prefix), "headers differ from a clean build"
    assert sorted(runner.output(["ar", "t", str(lib)]).split()) == sorted(
        runner.output(["ar", "t", str(clean_lib)]).split())

    # the table emptied: the generated file goes, so cmake re-runs and the object leaves the library
    # (built, not restored: the first build's artifact is taken out of the cache)
    table.write_text("syscalls: []\n")
    shutil.rmtree(s.cache_dir)
    capsys.readouterr()
    build.build_recipe("kern", rs, s)
    assert "[1/3] kern:cmake done" in capsys.readouterr().out
    assert "sys_my_syscall" not in " ".join(_symbols(lib))
