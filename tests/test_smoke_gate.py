"""The smoke gate: artifacts reach the remote cache only after the smoke test passed, and the
result is recorded in each artifact's manifest (real nginx as the remote)."""

from __future__ import annotations

import os

import json
from pathlib import Path

import pytest

from hermitbuild import build, cache, gate
from hermitbuild.errors import HermitBuildError
from hermitbuild.qemu import ExampleResult, SmokeResult
from hermitbuild.cache import LocalCache, RemoteCache, pack_artifact, read_manifest
from hermitbuild.errors import ArtifactError, CacheError

from helpers_cache import make_stage, settings_at
from helpers_nginx import nginx  # noqa: F401 (fixture)

KEYS = {"newlib": "1" * 64, "hermit": "2" * 64}


@pytest.fixture(autouse=True)
def _no_outage_memory():
    RemoteCache.forget_outages()
    yield
    RemoteCache.forget_outages()


def _installed(tmp_path: Path, **kw):
    """Two recipes built locally (artifact in the local cache + install stamp), not pushed."""
    settings = settings_at(tmp_path, **kw)
    local, _ = cache.open_caches(settings)
    for name, key in KEYS.items():
        stage = make_stage(tmp_path / "stage" / name, variant=name)
        art = pack_artifact(stage, key, {"format": 1, "recipe": {"name": name}}, tmp_path / f"{name}.tar.gz")
        local.put(key, art)
        build._write_install_stamp(build_recipe_stub(name), settings, key, [], "build")
    return settings, local


def build_recipe_stub(name: str):
    from hermitbuild.recipe import Recipe, Step

    return Recipe(name=name, version="1", file=Path(f"{name}.yaml"), steps=(Step("s", "run", ("true",)),))


def test_gate_only_applies_with_a_writable_remote(tmp_path):
    assert not gate.is_gated(settings_at(tmp_path))
    assert not gate.is_gated(settings_at(tmp_path, remote_cache="http://x", remote_cache_mode="read"))
    assert gate.is_gated(settings_at(tmp_path, remote_cache="http://x", remote_cache_mode="readwrite"))
    assert not gate.is_gated(settings_at(tmp_path, remote_cache="http://x", remote_cache_mode="readwrite",
                                               smoke_gate=False))


def test_failed_smoke_is_recorded_and_nothing_is_pushed(tmp_path, nginx):
    settings, local = _installed(tmp_path, remote_cache=nginx.url, remote_cache_mode="readwrite")
    smoke = {"passed": False, "examples": {"hello": {"passed": False, "missing": ["hello world!"]}}}
    pushed = gate.record_and_push(list(KEYS), settings, smoke)
    assert pushed == []
    assert "PUT" not in nginx.methods()
    for key in KEYS.values():
        manifest = read_manifest(local.path(key))
        assert manifest["smoke"] == smoke and manifest["key"] == key
        cache.verify_artifact(local.path(key), key)  # still a valid artifact of the same key


def test_passed_smoke_pushes_annotated_artifacts(tmp_path, nginx):
    settings, local = _installed(tmp_path, remote_cache=nginx.url, remote_cache_mode="readwrite")
    smoke = {"passed": True, "examples": {"hello": {"passed": True}}}
    pushed = gate.record_and_push(list(KEYS), settings, smoke)
    assert sorted(pushed) == sorted(KEYS)
    puts = [uri for method, uri, status in nginx.requests() if method == "PUT" and status in (200, 201, 204)]
    assert len(puts) == 2 * len(KEYS)  # artifact + checksum object each
    # a fresh machine gets the annotated artifact from the remote
    remote = RemoteCache(nginx.url, "read", "")
    got = remote.get(KEYS["hermit"], tmp_path / "fresh" / "a.tar.gz")
    assert got is not None and read_manifest(got)["smoke"]["passed"] is True


def test_annotation_keeps_large_files_whole(tmp_path):
    """Files of several MB arrive from the decompressing thread in pieces that do not line up
    with tarfile's blocks (a real binutils artifact failed so: "unexpected end of data")."""
    stage = make_stage(tmp_path / "stage")
    big = stage / "bin" / "big-tool"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 12345))  # incompressible: many zstd blocks
    art = pack_artifact(stage, KEYS["newlib"], {"format": 1}, tmp_path / "a.tar.zst")
    out = cache.annotate_artifact(art, {"smoke": {"passed": True}}, tmp_path / "b.tar.zst")
    manifest = cache.verify_artifact(out, KEYS["newlib"])
    assert manifest["smoke"] == {"passed": True}
    restored = tmp_path / "restored"
    cache.restore_artifact(out, restored, KEYS["newlib"])
    assert next(restored.rglob("big-tool")).read_bytes() == big.read_bytes()


def test_annotation_cannot_change_identity_and_refuses_corrupt_input(tmp_path):
    stage = make_stage(tmp_path / "stage")
    art = pack_artifact(stage, KEYS["newlib"], {"format": 1}, tmp_path / "a.tar.gz")
    with pytest.raises(CacheError):
        cache.annotate_artifact(art, {"key": "0" * 64}, tmp_path / "b.tar.gz")
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        cache.annotate_artifact(bad, {"smoke": {}}, tmp_path / "c.tar.gz")
    assert not (tmp_path / "c.tar.gz").exists()


def test_enforce_records_and_pushes_on_a_pass_and_refuses_on_a_failure(tmp_path, nginx):
    """What `doit toolchain` does at its end with the smoke result (the gate's wiring)."""
    settings, local = _installed(tmp_path, remote_cache=nginx.url, remote_cache_mode="readwrite")
    bad = SmokeResult((ExampleResult("hello", True, True, False, 0, missing=("hello world!",)),))
    with pytest.raises(HermitBuildError) as exc:
        gate.enforce(list(KEYS), settings, bad)
    assert "not pushed" in exc.value.what and "PUT" not in nginx.methods()
    assert read_manifest(local.path(KEYS["newlib"]))["smoke"]["passed"] is False
    with pytest.raises(HermitBuildError):
        gate.enforce(list(KEYS), settings, SmokeResult(()))  # nothing ran is not a pass
    ok = SmokeResult((ExampleResult("hello", True, True, True, 0),))
    assert sorted(gate.enforce(list(KEYS), settings, ok)) == sorted(KEYS)
    assert read_manifest(local.path(KEYS["hermit"]))["smoke"]["passed"] is True
