"""The remote cache on the real build path: the fixture recipe set built in podman containers
with a real nginx remote, then a "second CI run" (other checkout, empty build dir and local
cache, empty prefix) that builds nothing and only restores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hermitbuild import build, cache, container
from hermitbuild.cache import RemoteCache
from hermitbuild.recipe import load_recipes

from helpers_cache import snapshot
from helpers_nginx import NginxServer, start_nginx
from helpers_podman import FixtureWorld, ensure_base_image, podman_settings, require_podman
from helpers_registry import Registry, registry  # noqa: F401 (fixture)

pytestmark = pytest.mark.podman


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("cacheworld")
    ensure_base_image(base)
    w = FixtureWorld(base)
    yield w
    w.close()


@pytest.fixture(scope="module")
def remote(world) -> NginxServer:
    with start_nginx(world.base / "nginx") as server:
        yield server


@pytest.fixture(autouse=True)
def _no_outage_memory():
    RemoteCache.forget_outages()
    yield
    RemoteCache.forget_outages()


def ci_run(world: FixtureWorld, name: str, remote: NginxServer, mode: str):
    """One CI job: a fresh checkout (root), fresh workspace and local cache, the shared prefix."""
    root = world.make_root(name)
    prefix = world.base / "opt" / "hermit"
    shutil.rmtree(prefix, ignore_errors=True)
    s = podman_settings(root, world.base / f"{name}-ws", prefix=prefix,
                        remote_cache=remote.url, remote_cache_mode=mode)
    return s, load_recipes(s.recipes_dir, s.patches_dir)


def test_second_ci_run_builds_nothing_and_only_restores(world, remote, monkeypatch, capsys) -> None:
    s1, rs1 = ci_run(world, "ci1", remote, "readwrite")
    build.build_all(["greeter"], rs1, s1)
    first = snapshot(s1.prefix)
    keys = {n: build.recipe_key(n, rs1, s1)[0] for n in rs1.order}
    puts = {uri for m, uri, status in remote.requests() if m == "PUT" and status in (201, 204)}
    assert {f"/cache/{k}" for k in keys.values()} <= puts, "every built recipe was pushed"

    # second run: other checkout path, empty build dir and local cache, empty prefix
    s2, rs2 = ci_run(world, "ci2", remote, "read")
    assert {n: build.recipe_key(n, rs2, s2)[0] for n in rs2.order} == keys, \
        "keys must not depend on the checkout or workspace location"
    monkeypatch.setattr(container, "run_in_container", lambda *a, **k: pytest.fail("built again"))
    before = len(remote.requests())
    capsys.readouterr()
    build.build_all(["greeter"], rs2, s2)
    out = capsys.readouterr().out
    assert all(f"{n}: restored from the artifact cache" in out for n in rs2.order), out
    assert snapshot(s2.prefix) == first
    assert [m for m, _, _ in remote.requests()[before:] if m == "PUT"] == [], "read mode never PUTs"
    greeting = subprocess.run([str(s2.prefix / "bin" / "greeter"), "cache"], capture_output=True,
                              text=True, check=True).stdout
    assert greeting.startswith("Hello, cache!")


def test_corrupt_remote_artifact_is_rebuilt(world, remote, caplog) -> None:
    s1, rs1 = ci_run(world, "ci3", remote, "readwrite")
    build.build_all(["greeter"], rs1, s1)  # restores (or builds) and pushes when missing
    key = build.recipe_key("greeter", rs1, s1)[0]
    stored = remote.stored(key)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    s2, rs2 = ci_run(world, "ci4", remote, "read")
    with caplog.at_level("WARNING", logger="hermitbuild.cache"):
        build.build_all(["greeter"], rs2, s2)
    assert "corrupt" in caplog.text
    assert build.is_installed("greeter", rs2, s2)
    assert (s2.prefix / "bin" / "greeter").is_file()


def test_second_ci_run_restores_everything_from_an_oci_registry(world, registry: Registry, monkeypatch,
                                                                  capsys) -> None:
    """The same two CI runs with a real registry (htpasswd auth) as the remote cache."""
    def run(name: str, mode: str):
        root = world.make_root(name)
        prefix = world.base / "opt" / "hermit"
        shutil.rmtree(prefix, ignore_errors=True)
        s = podman_settings(root, world.base / f"{name}-ws", prefix=prefix, remote_cache=registry.url(),
                            remote_cache_mode=mode, remote_cache_token=registry.token)
        return s, load_recipes(s.recipes_dir, s.patches_dir)

    s1, rs1 = run("oci1", "readwrite")
    build.build_all(["greeter"], rs1, s1)
    first = snapshot(s1.prefix)
    _, remote = cache.open_caches(s1)
    assert all(remote.has(build.recipe_key(n, rs1, s1)[0]) for n in rs1.order), "every recipe pushed"

    s2, rs2 = run("oci2", "read")
    monkeypatch.setattr(container, "run_in_container", lambda *a, **k: pytest.fail("built again"))
    capsys.readouterr()
    log_before = len(registry.log)
    build.build_all(["greeter"], rs2, s2)
    out = capsys.readouterr().out
    assert all(f"{n}: restored from the artifact cache" in out for n in rs2.order), out
    assert snapshot(s2.prefix) == first
    second = registry.log[log_before:]
    assert '"GET /v2/hermit/cache/blobs/sha256:' in second, "the second run pulled from the registry"
    assert '"PUT ' not in second and '"POST ' not in second, "read mode never writes"
