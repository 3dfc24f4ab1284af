"""The restore's writer (hermitbuild.cache.extract): real GNU tar fed the headers we write, and
nothing of the artifact's own headers; runner.feeding's failure paths."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from hermitbuild import runner
from hermitbuild.cache import pack_artifact, restore_artifact
from hermitbuild.cache.artifact import _walk_members
from hermitbuild.cache.extract import TarExtract, header
from hermitbuild.errors import CacheError, CommandError

from helpers_cache import KEY_A, file_entry, handmade_artifact, make_stage, manifest_for, snapshot


def _parse(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob + bytes(1024)), mode="r:") as tar:
        return tar.getmembers()


def test_headers_read_back_by_an_independent_parser() -> None:
    long_name = "share/" + "d" * 120 + "/ünïcode-" + "f" * 90 + ".h"
    blob = (header(long_name, b"0", 0o644, 1_700_000_000, 5) + b"hello" + bytes(507)
            + header("bin/cc", b"2", 0o777, 1_700_000_001, link="/opt/hermit/" + "x" * 120)
            + header("lib/", b"5", 0o755, 1_700_000_002))
    members = _parse(blob)
    assert [(m.name, m.type, m.mode, m.mtime) for m in members] == [
        (long_name, tarfile.REGTYPE, 0o644, 1_700_000_000),
        ("bin/cc", tarfile.SYMTYPE, 0o777, 1_700_000_001),
        ("lib", tarfile.DIRTYPE, 0o755, 1_700_000_002)]
    assert members[1].linkname == "/opt/hermit/" + "x" * 120
    huge = header("huge", b"0", 0o600, 1, 8 ** 11 + 1)  # beyond ustar's 11 octal digits
    assert b" size=8589934593\n" in huge and len(huge) == 3 * 512  # pax header, its data, ustar


def test_round_trip_through_tar_equals_the_stage(tmp_path: Path) -> None:
    stage = make_stage(tmp_path / "stage")
    (stage / "share" / "ünïcode.txt").write_text("utf-8 name\n")
    (stage / "share" / ("l" * 150)).write_text("a name longer than ustar's 100 bytes\n")
    os.symlink("../" + "t" * 150, stage / "share" / "long-link")
    os.chmod(stage / "share" / "empty", 0o555)  # a directory without write permission
    art = pack_artifact(stage, KEY_A, {}, tmp_path / "a.tar.zst")
    dest = tmp_path / "dest"
    restore_artifact(art, dest, KEY_A)
    expected = snapshot(stage)
    expected["share/empty"] = ("dir", 0o755)  # restored directories are always writable by their owner
    assert snapshot(dest) == expected


def test_pax_records_of_the_artifact_never_reach_tar(tmp_path: Path) -> None:
    """A member whose own pax header names another path for tar (GNU.sparse.name, as tar's
    sparse format 1.0 reads it) is written where the manifest says, and nowhere else."""
    data = b"payload\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        blob = json.dumps(manifest_for(KEY_A, [{"path": "lib", "type": "dir", "mode": 0o755},
                                                file_entry("lib/ok.txt", data)])).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(blob)
        tar.addfile(ti, io.BytesIO(blob))
        ti = tarfile.TarInfo("files/lib")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(ti)
        ti = tarfile.TarInfo("files/lib/ok.txt")
        ti.size, ti.mode = len(data), 0o644
        ti.pax_headers = {"GNU.sparse.name": "lib/evil.txt", "GNU.sparse.major": "1",
                          "GNU.sparse.minor": "0", "uid": "4242", "SCHILY.xattr.user.x": "y"}
        tar.addfile(ti, io.BytesIO(data))
    art = tmp_path / "a.tar"
    art.write_bytes(gzip.compress(buf.getvalue()))
    dest = tmp_path / "dest"
    restore_artifact(art, dest, KEY_A)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["lib", "lib/ok.txt"]
    assert (dest / "lib" / "ok.txt").read_bytes() == data
    assert (dest / "lib" / "ok.txt").stat().st_uid == os.getuid()


def test_a_content_mismatch_leaves_nothing_in_the_prefix(tmp_path: Path) -> None:
    files = [{"path": "lib", "type": "dir", "mode": 0o755}, file_entry("lib/a", b"expected")]
    members = [("files/lib", "dir", None), ("files/lib/a", "file", b"tampered")]
    art = handmade_artifact(tmp_path / "bad.tar.gz", manifest_for(KEY_A, files), members)
    dest = tmp_path / "dest"
    with pytest.raises(Exception) as info:
        restore_artifact(art, dest, KEY_A)
    assert "sha256" in str(info.value)
    assert list(dest.iterdir()) == []  # the stage was written by tar, then discarded whole


def test_tar_failing_to_write_is_a_cache_error(tmp_path: Path) -> None:
    data = b"x"
    files = [{"path": "lib", "type": "dir", "mode": 0o755}, file_entry("lib/a", data)]
    members = [("files/lib", "dir", None), ("files/lib/a", "file", data)]
    art = handmade_artifact(tmp_path / "ok.tar.gz", manifest_for(KEY_A, files), members)
    stage = tmp_path / "stage"
    (stage / "lib" / "a").mkdir(parents=True)  # a directory where tar must create the file
    with pytest.raises(CacheError) as info:
        _walk_members(art, KEY_A, stage)
    assert "tar" in info.value.why or "Is a directory" in info.value.why
    assert "free space" in info.value.fix


def test_feeding_reports_a_child_that_stops_reading(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as info:
        with runner.feeding(["sh", "-c", "echo giving up >&2; exit 3"]) as pipe:
            time.sleep(0.2)
            for _ in range(64):
                pipe.write(bytes(1024 * 1024))
    assert info.value.returncode == 3 and "giving up" in info.value.tail


def test_feeding_kills_the_child_when_the_block_fails(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    with pytest.raises(RuntimeError):
        with runner.feeding(["sh", "-c", f"echo $$ > {marker}; cat > /dev/null"]) as pipe:
            pipe.write(b"some")
            for _ in range(50):
                if marker.exists() and marker.read_text().strip():
                    break
                time.sleep(0.05)
            raise RuntimeError("the caller failed")
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_extract_outside_a_block_needs_no_tar_when_only_verifying(tmp_path: Path, monkeypatch) -> None:
    """Verification alone (doit cache verify) starts no tar."""
    stage = make_stage(tmp_path / "stage")
    art = pack_artifact(stage, KEY_A, {}, tmp_path / "a.tar.zst")
    monkeypatch.setattr(TarExtract, "__enter__", lambda self: pytest.fail("tar started"))
    _walk_members(art, KEY_A, None)
