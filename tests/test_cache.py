"""Artifacts (pack / verify / restore) and the local cache (atomic, locked, pruned), plus the CLI."""

from __future__ import annotations

import json
import logging
import multiprocessing
import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import zstandard

from hermitbuild import cache
from hermitbuild.fsutil import sha256_file
from hermitbuild.cache import (LocalCache, cache_cli, pack_artifact, parse_size, read_manifest,
                               restore_artifact, verify_artifact)
from hermitbuild.errors import ArtifactError, CacheError, ConfigError

from helpers_cache import (KEY_A, KEY_B, file_entry, handmade_artifact, make_stage, manifest_for,
                           settings_at, snapshot)

INPUTS = {"format": 1, "recipe": {"name": "demo"}}


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return make_stage(tmp_path / "stage" / "opt" / "hermit")


@pytest.fixture
def artifact(tmp_path: Path, stage: Path) -> Path:
    return pack_artifact(stage, KEY_A, INPUTS, tmp_path / "out" / "a.tar.gz")


def key(i: int) -> str:
    return f"{i:064x}"


# ----------------------------------------------------------------------------- pack / restore

def test_round_trip_keeps_files_modes_links_and_mtimes(tmp_path: Path, stage: Path, artifact: Path) -> None:
    dest = tmp_path / "prefix"
    restored = restore_artifact(artifact, dest, KEY_A)
    assert snapshot(dest) == snapshot(stage)
    assert (dest / "bin" / "x86_64-hermit-gcc").stat().st_mode & 0o777 == 0o755
    assert (dest / "lib" / "private.key").stat().st_mode & 0o777 == 0o600
    assert os.readlink(dest / "bin" / "x86_64-hermit-cc") == "x86_64-hermit-gcc"
    assert os.readlink(dest / "x86_64-hermit" / "gcc-abs") == "/opt/hermit/bin/x86_64-hermit-gcc"
    assert int((dest / "bin" / "x86_64-hermit-gcc").stat().st_mtime) == 1_500_000_000
    assert (dest / "share" / "empty").is_dir()
    assert set(restored) == set(snapshot(stage))
    assert not [p for p in dest.iterdir() if p.name.startswith(".hermitbuild-restore")]


def test_manifest_contents(stage: Path, artifact: Path) -> None:
    m = read_manifest(artifact)
    assert m["key"] == KEY_A and m["inputs"] == INPUTS and m["format"] == 1
    assert m["tool"].startswith("hermitbuild ") and m["created"].endswith("Z")
    by_path = {f["path"]: f for f in m["files"]}
    assert by_path["bin/x86_64-hermit-cc"] == {"path": "bin/x86_64-hermit-cc", "type": "symlink",
                                               "mode": 0o777, "target": "x86_64-hermit-gcc"}
    lib = by_path["lib/libhermit.a"]
    assert lib["size"] == (stage / "lib" / "libhermit.a").stat().st_size
    assert lib["type"] == "file" and len(lib["sha256"]) == 64
    raw = artifact.read_bytes()
    assert raw[:4] == b"\x28\xb5\x2f\xfd", "artifacts are zstd-compressed"
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompressobj().decompress(raw))) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert all(n.startswith("files/") for n in names[1:])
    assert verify_artifact(artifact, KEY_A)["key"] == KEY_A


def test_restore_merges_into_existing_prefix(tmp_path: Path, stage: Path, artifact: Path) -> None:
    dest = tmp_path / "prefix"
    (dest / "bin").mkdir(parents=True)
    (dest / "bin" / "other-tool").write_text("from another recipe")
    (dest / "bin" / "x86_64-hermit-gcc").write_text("old gcc")
    os.symlink("nowhere", dest / "bin" / "x86_64-hermit-cc")
    restore_artifact(artifact, dest, KEY_A)
    assert (dest / "bin" / "other-tool").read_text() == "from another recipe"
    assert (dest / "bin" / "x86_64-hermit-gcc").read_bytes() == (stage / "bin" / "x86_64-hermit-gcc").read_bytes()
    assert os.readlink(dest / "bin" / "x86_64-hermit-cc") == "x86_64-hermit-gcc"


def _rejected(artifact: Path, dest: Path, expected_key: str = KEY_A, match: str = "rejected") -> ArtifactError:
    before = snapshot(dest)
    with pytest.raises(ArtifactError, match=match) as info:
        restore_artifact(artifact, dest, expected_key)
    assert snapshot(dest) == before, "the install root changed although the artifact was rejected"
    return info.value


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "prefix"
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "x86_64-hermit-gcc").write_text("old gcc that must survive")
    (d / "keep").write_text("keep me")
    return d


def test_wrong_key_is_rejected(artifact: Path, dest: Path) -> None:
    err = _rejected(artifact, dest, KEY_B, match="rejected")
    assert "does not match the expected key" in err.why


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_artifact_is_rejected(artifact: Path, dest: Path, fraction: float) -> None:
    data = artifact.read_bytes()
    artifact.write_bytes(data[: int(len(data) * fraction)])
    _rejected(artifact, dest)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.95])
def test_flipped_byte_is_rejected(artifact: Path, dest: Path, where: float) -> None:
    data = bytearray(artifact.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    artifact.write_bytes(bytes(data))
    _rejected(artifact, dest)


def test_not_an_archive_is_rejected(tmp_path: Path, dest: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"<html>502 Bad Gateway</html>")
    _rejected(bogus, dest)
    with pytest.raises(ArtifactError):
        read_manifest(bogus)


GOOD = b"good content"


@pytest.mark.parametrize("case", [
    "content-mismatch", "extra-member", "missing-member", "dotdot-path", "absolute-path",
    "empty-link-target", "write-through-symlink", "manifest-not-first", "hardlink-member",
    "wrong-type", "duplicate-path",
])
def test_tampered_artifacts_are_rejected(tmp_path: Path, dest: Path, case: str) -> None:
    files = [{"path": "bin", "type": "dir", "mode": 0o755}, file_entry("bin/x86_64-hermit-gcc", GOOD)]
    members = [("files/bin", "dir", None), ("files/bin/x86_64-hermit-gcc", "file", GOOD)]
    first = True
    if case == "content-mismatch":
        members[1] = ("files/bin/x86_64-hermit-gcc", "file", b"evil content")
    elif case == "extra-member":
        members.append(("files/bin/extra", "file", b"x"))
    elif case == "missing-member":
        files.append(file_entry("bin/ld", b"ld"))
    elif case == "dotdot-path":
        files.append(file_entry("../evil", b"x"))
        members.append(("files/../evil", "file", b"x"))
    elif case == "absolute-path":
        files.append(file_entry("/tmp/evil", b"x"))
        members.append(("files//tmp/evil", "file", b"x"))
    elif case == "empty-link-target":
        files.append({"path": "bin/up", "type": "symlink", "mode": 0o777, "target": ""})
        members.append(("files/bin/up", "symlink", ""))
    elif case == "write-through-symlink":
        outside = tmp_path / "outside"
        outside.mkdir()
        files += [{"path": "lnk", "type": "symlink", "mode": 0o777, "target": str(outside)},
                  file_entry("lnk/pwned", b"x")]
        members += [("files/lnk", "symlink", str(outside)), ("files/lnk/pwned", "file", b"x")]
    elif case == "manifest-not-first":
        first = False
    elif case == "hardlink-member":
        files.append(file_entry("bin/hl", b""))
        members.append(("files/bin/hl", "hardlink", None))
    elif case == "wrong-type":
        members[1] = ("files/bin/x86_64-hermit-gcc", "symlink", "elsewhere")
    elif case == "duplicate-path":
        files.append(file_entry("bin/x86_64-hermit-gcc", GOOD))
    if case == "hardlink-member":
        art = tmp_path / "hl.tar.gz"
        import gzip
        import io
        buf = io.BytesIO()
        blob = json.dumps(manifest_for(KEY_A, files)).encode()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(blob)
            tar.addfile(ti, io.BytesIO(blob))
            for name, kind, data in members:
                ti = tarfile.TarInfo(name)
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                elif kind == "hardlink":
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = "files/bin/x86_64-hermit-gcc"
                    tar.addfile(ti)
                else:
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))
        art.write_bytes(gzip.compress(buf.getvalue()))
    else:
        art = handmade_artifact(tmp_path / f"{case}.tar.gz", manifest_for(KEY_A, files), members, first)
    _rejected(art, dest)
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "outside" / "pwned").exists()
    assert not Path("/tmp/evil").exists() or case != "absolute-path"


def test_a_correct_handmade_artifact_is_accepted(tmp_path: Path, dest: Path) -> None:
    """Guards the tampering test: its baseline artifact really is valid."""
    files = [{"path": "bin", "type": "dir", "mode": 0o755}, file_entry("bin/x86_64-hermit-gcc", GOOD)]
    members = [("files/bin", "dir", None), ("files/bin/x86_64-hermit-gcc", "file", GOOD)]
    art = handmade_artifact(tmp_path / "ok.tar.gz", manifest_for(KEY_A, files), members)
    assert restore_artifact(art, dest, KEY_A) == ["bin", "bin/x86_64-hermit-gcc"]
    assert (dest / "bin" / "x86_64-hermit-gcc").read_bytes() == GOOD


@pytest.mark.parametrize("hard_links", [True, False])
@pytest.mark.parametrize("fail_at", [1, 2, 3, 4, 5])
def test_failure_while_merging_rolls_back(artifact: Path, dest: Path, monkeypatch, fail_at: int,
                                          hard_links: bool) -> None:
    """The n-th rename/replace into the prefix fails: everything already moved is undone."""
    (dest / "bin" / "x86_64-hermit-cc").write_text("old cc, overwritten by a symlink")
    if not hard_links:
        def no_link(*a, **kw):
            raise OSError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
    before = snapshot(dest)
    real = {"replace": os.replace, "rename": os.rename}
    calls = {"n": 0}

    def flaky(name):
        def inner(src, dst):
            if (not calls.get("failed") and str(dst).startswith(str(dest))
                    and ".hermitbuild-restore" not in str(dst)):
                calls["n"] += 1
                if calls["n"] == fail_at:
                    calls["failed"] = True
                    raise OSError(28, "No space left on device")
            return real[name](src, dst)
        return inner

    monkeypatch.setattr(os, "replace", flaky("replace"))
    monkeypatch.setattr(os, "rename", flaky("rename"))
    with pytest.raises(CacheError, match="cannot restore"):
        restore_artifact(artifact, dest, KEY_A)
    monkeypatch.setattr(os, "replace", real["replace"])
    monkeypatch.setattr(os, "rename", real["rename"])
    assert calls["n"] == fail_at
    assert snapshot(dest) == before
    # and the same artifact restores fine afterwards
    restore_artifact(artifact, dest, KEY_A)
    assert (dest / "keep").read_text() == "keep me"


def test_conflicting_directory_leaves_prefix_untouched(artifact: Path, dest: Path) -> None:
    (dest / "lib" / "libhermit.a").mkdir(parents=True)
    before = snapshot(dest)
    with pytest.raises(CacheError, match="is a directory"):
        restore_artifact(artifact, dest, KEY_A)
    assert snapshot(dest) == before


def test_restore_refuses_to_write_through_a_symlinked_dir_leaving_the_root(
        tmp_path: Path, artifact: Path, dest: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, dest / "lib")
    before = snapshot(dest)
    with pytest.raises(CacheError, match="outside the install root"):
        restore_artifact(artifact, dest, KEY_A)
    assert snapshot(dest) == before and list(outside.iterdir()) == []


def test_links_leaving_the_root_are_data_never_written_through(tmp_path: Path, caplog) -> None:
    """Like Debian's ../../../x86_64-linux-gnu/libasan.so links: packed (with a warning) and
    restored as links; a later artifact that would write through such a link is refused."""
    stage = tmp_path / "s"
    (stage / "lib").mkdir(parents=True)
    os.symlink("../../../x86_64-linux-gnu/libasan.so.8", stage / "lib" / "libasan.so")
    os.symlink("../../etc", stage / "etc")
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        art = pack_artifact(stage, KEY_A, {}, tmp_path / "a.tar.gz")
    assert "outside the install root" in caplog.text
    dest = tmp_path / "deep" / "er" / "prefix"
    restore_artifact(art, dest, KEY_A)
    assert os.readlink(dest / "lib" / "libasan.so") == "../../../x86_64-linux-gnu/libasan.so.8"
    assert os.readlink(dest / "etc") == "../../etc"
    # another artifact putting a file under etc/ would write outside the prefix: refused
    files = [{"path": "etc", "type": "dir", "mode": 0o755}, file_entry("etc/pwned", b"x")]
    other = handmade_artifact(tmp_path / "b.tar.gz", manifest_for(KEY_B, files),
                              [("files/etc", "dir", None), ("files/etc/pwned", "file", b"x")])
    (tmp_path / "deep" / "etc").mkdir()  # the link now resolves to a real directory outside
    with pytest.raises(CacheError, match="outside the install root"):
        restore_artifact(other, dest, KEY_B)
    assert list((tmp_path / "deep" / "etc").iterdir()) == []


def test_pack_rejects_special_files_and_missing_stage(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    stage.mkdir()
    out = tmp_path / "a.tar.gz"
    os.mkfifo(stage / "fifo")
    with pytest.raises(CacheError, match="not a file, directory or symlink"):
        pack_artifact(stage, KEY_A, {}, out)
    assert not out.exists() and list(tmp_path.glob(".a.tar.gz*")) == []
    with pytest.raises(CacheError, match="not a directory"):
        pack_artifact(tmp_path / "missing", KEY_A, {}, out)


# ----------------------------------------------------------------------------- local cache

def test_parse_size() -> None:
    assert parse_size("20G") == 20 * 1024 ** 3
    assert parse_size("512m") == 512 * 1024 ** 2
    assert parse_size("1.5GiB") == int(1.5 * 1024 ** 3)
    assert parse_size("1000") == 1000
    assert parse_size(7) == 7
    for bad in ("", "lots", "12X", "-1G"):
        with pytest.raises(ConfigError, match="not a size"):
            parse_size(bad)


def test_put_get_has_list_stats(tmp_path: Path, artifact: Path) -> None:
    lc = LocalCache(tmp_path / "cache", parse_size("1G"))
    assert lc.get(KEY_A) is None and not lc.has(KEY_A)
    stored = lc.put(KEY_A, artifact)
    assert stored == tmp_path / "cache" / KEY_A[:2] / KEY_A
    assert stored.read_bytes() == artifact.read_bytes() and artifact.exists()
    sidecar = (stored.parent / f"{KEY_A}.sha256").read_text().split()
    assert sidecar == [sha256_file(artifact)[0], KEY_A]
    assert lc.has(KEY_A) and lc.get(KEY_A) == stored
    assert [e.key for e in lc.list()] == [KEY_A]
    assert lc.stats()["entries"] == 1 and lc.stats()["size"] == stored.stat().st_size
    assert lc.verify() == []
    with pytest.raises(ArtifactError, match="refusing"):
        lc.put(KEY_B, artifact)
    assert not lc.has(KEY_B)
    with pytest.raises(CacheError, match="invalid cache key"):
        lc.path("../../etc/passwd")


def test_corrupt_local_entry_is_discarded_with_a_warning(tmp_path: Path, artifact: Path, caplog) -> None:
    lc = LocalCache(tmp_path / "cache", 0)
    stored = lc.put(KEY_A, artifact)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 1
    stored.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert lc.get(KEY_A) is None
    assert "corrupt" in caplog.text
    assert not stored.exists() and not lc.has(KEY_A)


def test_install_from_cache_discards_an_artifact_that_fails_restore(tmp_path: Path, stage: Path,
                                                                    caplog) -> None:
    """A bad artifact whose bytes match the sidecar (packed for another key) is rejected at restore."""
    lc = LocalCache(tmp_path / "cache", 0)
    wrong = pack_artifact(stage, KEY_B, INPUTS, tmp_path / "b.tar.gz")
    good = pack_artifact(stage, KEY_A, INPUTS, tmp_path / "a.tar.gz")
    stored = lc.put(KEY_A, good)
    shutil.copyfile(wrong, stored)
    (stored.parent / f"{KEY_A}.sha256").write_text(f"{sha256_file(stored)[0]}  {KEY_A}\n")
    dest = tmp_path / "prefix"
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert cache.install_from_cache(KEY_A, dest, lc, None) is None
    assert "rejected" in caplog.text
    assert not lc.has(KEY_A)
    assert snapshot(dest) == {}


def test_restore_checks_the_recorded_sha256_in_its_one_pass(tmp_path: Path, stage: Path,
                                                          caplog) -> None:
    """An entry swapped for another valid artifact of the same key (its own manifest matches)
    is caught by the sha256 computed while restoring: nothing is installed, the entry goes."""
    lc = LocalCache(tmp_path / "cache", 0)
    stored = lc.put(KEY_A, pack_artifact(stage, KEY_A, INPUTS, tmp_path / "a.tar.zst"))
    (stage / "lib" / "libhermit.a").write_bytes(b"another build\n")
    shutil.copyfile(pack_artifact(stage, KEY_A, INPUTS, tmp_path / "a2.tar.zst"), stored)
    dest = tmp_path / "prefix"
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert cache.install_from_cache(KEY_A, dest, lc, None) is None
    assert "differs from the recorded" in caplog.text
    assert not lc.has(KEY_A) and snapshot(dest) == {}


def test_old_gzip_artifacts_still_restore(tmp_path: Path, stage: Path, artifact: Path) -> None:
    """Artifacts of the previous format (tar.gz) in a cache keep working after the switch to zstd."""
    tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(artifact.read_bytes())
    old = tmp_path / "old.tar.gz"
    old.write_bytes(gzip.compress(tar_bytes, mtime=0))
    lc = LocalCache(tmp_path / "cache", 0)
    lc.put(KEY_A, old)
    dest = tmp_path / "prefix"
    assert cache.install_from_cache(KEY_A, dest, lc, None) is not None
    assert snapshot(dest) == snapshot(stage)


def test_verify_finds_deep_problems(tmp_path: Path, stage: Path) -> None:
    lc = LocalCache(tmp_path / "cache", 0)
    lc.put(KEY_A, pack_artifact(stage, KEY_A, INPUTS, tmp_path / "a.tar.gz"))
    lc.put(KEY_B, pack_artifact(stage, KEY_B, INPUTS, tmp_path / "b.tar.gz"))
    # KEY_B's bytes replaced by KEY_A's artifact, sidecar updated: only a deep check notices
    shutil.copyfile(lc.path(KEY_A), lc.path(KEY_B))
    (lc.path(KEY_B).parent / f"{KEY_B}.sha256").write_text(
        f"{sha256_file(lc.path(KEY_B))[0]}  {KEY_B}\n")
    bad = lc.verify()
    assert [k for k, _ in bad] == [KEY_B]
    assert lc.has(KEY_A) and not lc.has(KEY_B)


def test_prune_removes_least_recently_used(tmp_path: Path, stage: Path) -> None:
    lc = LocalCache(tmp_path / "cache", 0)
    for i in range(4):
        lc.put(key(i), pack_artifact(stage, key(i), INPUTS, tmp_path / f"{i}.tar.gz"))
        os.utime(lc.path(key(i)), (1000 + i, 1000 + i))
    assert lc.get(key(0)) is not None  # key 0 becomes the most recently used
    size = lc.path(key(0)).stat().st_size
    removed = lc.prune(max_size=2 * size + size // 2)
    assert sorted(removed) == [key(1), key(2)]
    assert {e.key for e in lc.list()} == {key(0), key(3)}
    stray = lc.root / "00" / f".{key(9)}.x.tmp"
    stray.parent.mkdir(exist_ok=True)
    stray.write_text("left over")
    os.utime(stray, (1, 1))
    lc.prune()
    assert not stray.exists()


def test_put_prunes_when_over_the_bound(tmp_path: Path, stage: Path) -> None:
    first = pack_artifact(stage, key(1), INPUTS, tmp_path / "1.tar.gz")
    lc = LocalCache(tmp_path / "cache", first.stat().st_size + 10)
    lc.put(key(1), first)
    os.utime(lc.path(key(1)), (1000, 1000))
    lc.put(key(2), pack_artifact(stage, key(2), INPUTS, tmp_path / "2.tar.gz"))
    assert [e.key for e in lc.list()] == [key(2)]


def _writer(root: str, artifacts: dict[str, list[str]], rounds: int, queue) -> None:
    lc = LocalCache(Path(root), parse_size("1G"))
    try:
        for _ in range(rounds):
            for k, paths in artifacts.items():
                for p in paths:
                    lc.put(k, Path(p))
                    got = lc.get(k)
                    assert got is not None, f"entry {k} vanished or was corrupt right after put"
                    verify_artifact(got, k)
        queue.put("ok")
    except BaseException as exc:  # report to the parent
        queue.put(repr(exc))


def test_concurrent_writers(tmp_path: Path, stage: Path) -> None:
    """Several processes put the same key (different bytes) and their own keys at once."""
    shared = [str(pack_artifact(make_stage(tmp_path / f"st{v}", variant=v), KEY_A, INPUTS,
                                tmp_path / f"shared-{v}.tar.gz")) for v in ("x", "y", "z")]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = []
    for i in range(6):
        own = str(pack_artifact(stage, key(i), INPUTS, tmp_path / f"own-{i}.tar.gz"))
        work = {KEY_A: shared, key(i): [own]}
        procs.append(ctx.Process(target=_writer, args=(str(tmp_path / "cache"), work, 5, queue)))
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok"] * 6
    lc = LocalCache(tmp_path / "cache", 0)
    assert {e.key for e in lc.list()} == {KEY_A} | {key(i) for i in range(6)}
    assert lc.verify(remove=False) == []
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# ----------------------------------------------------------------------------- CLI

def test_cli_stats_list_prune_verify(tmp_path: Path, stage: Path, capsys) -> None:
    settings = settings_at(tmp_path, cache_max_size="1G")
    lc = LocalCache(settings.cache_dir, parse_size("1G"))
    for i in range(3):
        lc.put(key(i), pack_artifact(stage, key(i), {"recipe": {"name": f"r{i}", "version": "2.0"}},
                                     tmp_path / f"{i}.tar.gz"))
    assert cache_cli(["stats"], settings) == 0
    out = capsys.readouterr().out
    assert "entries:      3" in out and str(settings.cache_dir) in out
    assert cache_cli(["list"], settings) == 0
    out = capsys.readouterr().out
    assert all(key(i) in out and f"r{i} 2.0" in out for i in range(3))
    assert cache_cli(["verify"], settings) == 0
    assert "3 good, 0 bad" in capsys.readouterr().out
    lc.path(key(1)).write_bytes(b"garbage")
    (lc.path(key(1)).parent / f"{key(1)}.sha256").write_text(
        f"{sha256_file(lc.path(key(1)))[0]}  {key(1)}\n")
    assert cache_cli(["verify"], settings) == 1
    out = capsys.readouterr().out
    assert f"{key(1)}  BAD" in out and "2 good, 1 bad" in out
    assert cache_cli(["prune", "--max-size", "0"], settings) == 0
    assert "pruned 2 entries" in capsys.readouterr().out
    assert lc.list() == []
    assert cache_cli(["frobnicate"], settings) == 2
    with pytest.raises(CacheError, match="not writable"):
        cache_cli(["push"], settings)


def test_open_caches(tmp_path: Path) -> None:
    local, remote = cache.open_caches(settings_at(tmp_path, cache_max_size="3M"))
    assert local.root == tmp_path / "cache" and local.max_size == 3 * 1024 * 1024 and remote is None
    local, remote = cache.open_caches(settings_at(
        tmp_path, remote_cache="http://127.0.0.1:9/c/", remote_cache_mode="read",
        remote_cache_token="t0k"))
    assert remote is not None and remote.mode == "read" and remote.base_url == "http://127.0.0.1:9/c"
    assert remote.session.headers["Authorization"] == "Bearer t0k"
    with pytest.raises(ConfigError, match="not a size"):
        cache.open_caches(settings_at(tmp_path, cache_max_size="big"))


def test_zero_bound_means_unbounded_and_stale_leftovers_are_swept(tmp_path: Path, stage: Path,
                                                                  artifact: Path) -> None:
    lc = LocalCache(tmp_path / "cache", 0)
    lc.put(KEY_A, artifact)
    assert lc.prune() == [] and lc.has(KEY_A)
    assert lc.prune(max_size=0) == [KEY_A]
    dest = tmp_path / "prefix"
    stale = dest / ".hermitbuild-restore-old"
    (stale / "stage").mkdir(parents=True)
    os.utime(stale, (1, 1))
    restore_artifact(artifact, dest, KEY_A)
    assert not stale.exists()


def test_restore_without_hard_links_still_rolls_back(artifact: Path, dest: Path, monkeypatch) -> None:
    """On a file system without hard links the old files are moved aside (and back on failure)."""
    def no_link(*a, **kw):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    before = snapshot(dest)
    real_replace = os.replace

    failed = []

    def fail_late(src, dst):
        if (not failed and str(dst).endswith("x86_64-hermit-gcc")
                and ".hermitbuild-restore" not in str(dst)):
            failed.append(dst)
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_late)
    with pytest.raises(CacheError):
        restore_artifact(artifact, dest, KEY_A)
    assert failed and snapshot(dest) == before
    monkeypatch.setattr(os, "replace", real_replace)
    restore_artifact(artifact, dest, KEY_A)
    assert (dest / "keep").read_text() == "keep me"


def test_read_only_cache_directory_can_still_be_read(tmp_path: Path, artifact: Path, monkeypatch) -> None:
    """A cache dir we may not write (no lock file possible): hits still work, writes fail clearly."""
    import builtins
    lc = LocalCache(tmp_path / "cache", 0)
    lc.put(KEY_A, artifact)

    def no_lock(path, *a, **kw):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *a, **kw)

    monkeypatch.setattr(cache.local, "open", no_lock, raising=False)
    assert lc.get(KEY_A) is not None
    with pytest.raises(CacheError, match="cannot use the local cache"):
        lc.put(KEY_A, artifact)


def test_restore_keeps_files_whose_content_is_unchanged(tmp_path: Path, stage: Path) -> None:
    """A reinstall after an incremental build: unchanged files keep their mtimes (so makes
    that depend on them, HermitCore's runtimes on newlib's headers, rebuild nothing), changed
    ones and ones whose mode changed are replaced."""
    dest = tmp_path / "prefix"
    first = pack_artifact(stage, KEY_A, INPUTS, tmp_path / "a1.tar.zst")
    restore_artifact(first, dest, KEY_A)
    header = dest / "x86_64-hermit" / "include" / "sys" / "unistd.h"
    lib = dest / "lib" / "libhermit.a"
    private = dest / "lib" / "private.key"
    for p in (header, lib, private):
        os.utime(p, (1_000_000_000, 1_000_000_000))
    (stage / "lib" / "libhermit.a").write_bytes(b"rebuilt")
    os.chmod(stage / "lib" / "private.key", 0o640)
    for p in stage.rglob("*"):  # `make install` again: every file newer
        if not p.is_symlink():
            os.utime(p, (1_700_000_000, 1_700_000_000))
    second = pack_artifact(stage, KEY_B, INPUTS, tmp_path / "a2.tar.zst")
    restore_artifact(second, dest, KEY_B)
    assert int(header.stat().st_mtime) == 1_000_000_000, "an unchanged file was replaced"
    assert lib.read_bytes() == b"rebuilt" and int(lib.stat().st_mtime) == 1_700_000_000
    assert private.stat().st_mode & 0o777 == 0o640 and int(private.stat().st_mtime) == 1_700_000_000
