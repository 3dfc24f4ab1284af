"""Tarball fetching against a real HTTP server on 127.0.0.1 (Range, retries, mirrors, offline)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from hermitbuild import fetch
from hermitbuild.errors import ChecksumError, FetchError, OfflineError
from hermitbuild.recipe import Source

from helpers_fetch import FileServer, make_settings

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch.common, "BACKOFF_SECONDS", 0.01)


@pytest.fixture()
def server():
    with FileServer() as srv:
        yield srv


def tarball(url: str, sha: str = SHA, **kw) -> Source:
    return Source(kind="tarball", url=url, sha256=sha, **kw)


def no_leftovers(settings, name: str) -> None:
    d = settings.downloads
    assert not (d / name).exists()
    assert not (d / (name + ".part")).exists()


def test_download_verifies_and_second_fetch_makes_no_request(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg-1.0.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path)
    src = tarball(server.url("/up/pkg-1.0.tar.gz"))
    assert not fetch.is_fetched(src, settings)
    path = fetch.fetch_source(src, settings)
    assert path == fetch.tarball_path(src, settings) == settings.downloads / "pkg-1.0.tar.gz"
    assert path.read_bytes() == PAYLOAD
    assert fetch.is_fetched(src, settings)
    assert not path.with_name(path.name + ".part").exists()
    fetch.fetch_source(src, settings)
    assert len(server.requests_for("/up/")) == 1
    # a file changed behind our back is not "fetched" any more, and gets re-verified/re-fetched
    path.write_bytes(b"tampered")
    assert not fetch.is_fetched(src, settings)
    fetch.fetch_source(src, settings)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests_for("/up/")) == 2


def test_dropped_connection_resumes_with_range(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/big.tar.xz"] = PAYLOAD
    server.actions["/up/big.tar.xz"] = ["drop"]
    settings = make_settings(tmp_path)
    path = fetch.fetch_source(tarball(server.url("/up/big.tar.xz")), settings)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    log = server.requests_for("/up/big.tar.xz")
    assert [status for _p, _r, status in log] == [200, 206]
    assert log[0][1] is None
    start = int(log[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < len(PAYLOAD)


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/x.tar.gz"] = PAYLOAD
    server.actions["/up/x.tar.gz"] = ["norange-drop", "norange"]
    settings = make_settings(tmp_path)
    path = fetch.fetch_source(tarball(server.url("/up/x.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD
    log = server.requests_for("/up/x.tar.gz")
    assert [s for *_x, s in log] == [200, 200]
    assert log[1][1] is not None  # it did ask to resume


def test_404_mirror_moves_on_to_upstream(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path, mirrors=(server.url("/mirror1"),))
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD
    assert [(p, s) for p, _r, s in server.log] == [("/mirror1/pkg.tar.gz", 404), ("/up/pkg.tar.gz", 200)]


def test_all_urls_fail_lists_every_url_with_status(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    server.actions["/up/pkg.tar.gz"] = ["503"] * 20
    settings = make_settings(tmp_path, mirrors=(server.url("/m1"), str(tmp_path / "localmirror")))
    with pytest.raises(FetchError) as info:
        fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    text = str(info.value)
    assert server.url("/m1/pkg.tar.gz") + ": HTTP 404" in text
    assert str(tmp_path / "localmirror" / "pkg.tar.gz") + ": not present" in text
    assert server.url("/up/pkg.tar.gz") + ": gave up after" in text and "HTTP 503" in text
    assert "fix:" in text and str(settings.downloads / "pkg.tar.gz") in text
    assert len(server.requests_for("/up/")) == fetch.common.RETRIES + 1
    no_leftovers(settings, "pkg.tar.gz")


def test_wrong_checksum_raises_and_leaves_nothing(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/evil.tar.gz"] = b"not what was pinned" * 1000
    settings = make_settings(tmp_path)
    with pytest.raises(ChecksumError) as info:
        fetch.fetch_source(tarball(server.url("/up/evil.tar.gz")), settings)
    err = info.value
    assert err.expected == SHA
    assert err.actual == hashlib.sha256(b"not what was pinned" * 1000).hexdigest()
    assert SHA in str(err) and err.actual in str(err)
    no_leftovers(settings, "evil.tar.gz")
    assert not list(settings.downloads.glob("evil.tar.gz*"))


def test_wrong_checksum_on_mirror_then_right_file_upstream(tmp_path: Path, server: FileServer) -> None:
    server.files["/m/pkg.tar.gz"] = b"stale"
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path, mirrors=(server.url("/m"),))
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD


def test_5xx_then_success_is_retried(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    server.actions["/up/pkg.tar.gz"] = ["503", "503", "ok"]
    settings = make_settings(tmp_path)
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD
    assert [s for *_x, s in server.log] == [503, 503, 200]


def test_mirror_with_the_file_is_used_before_upstream(tmp_path: Path, server: FileServer) -> None:
    server.files["/mirror/pkg.tar.gz"] = PAYLOAD
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path, mirrors=(server.url("/mirror/"),))
    fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert server.requests_for("/up/") == []
    assert len(server.requests_for("/mirror/")) == 1


def test_local_directory_and_file_url_mirrors(tmp_path: Path, server: FileServer) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pkg.tar.gz").write_bytes(PAYLOAD)
    for i, m in enumerate((str(mirror), mirror.as_uri())):
        settings = make_settings(tmp_path / f"s{i}", mirrors=(m,))
        path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
        assert path.read_bytes() == PAYLOAD
    assert server.log == []


def test_offline_never_touches_the_network(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    server.files["/m/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path, offline=True, mirrors=(server.url("/m"), str(tmp_path / "lm")))
    with pytest.raises(OfflineError) as info:
        fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    text = str(info.value)
    assert "pkg.tar.gz" in text
    assert str(settings.downloads / "pkg.tar.gz") in text  # where to put it
    assert str(tmp_path / "lm" / "pkg.tar.gz") in text  # the local mirror path that was looked at
    assert server.log == []
    no_leftovers(settings, "pkg.tar.gz")
    # a local mirror is not network: offline mode uses it
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "pkg.tar.gz").write_bytes(PAYLOAD)
    assert fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings).read_bytes() == PAYLOAD
    assert server.log == []


def test_offline_with_file_already_downloaded(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path)
    src = tarball(server.url("/up/pkg.tar.gz"))
    fetch.fetch_source(src, settings)
    # copied to another machine: no .verified note, mtime differs -> re-hashed, no network
    (settings.downloads / "pkg.tar.gz.verified").unlink()
    fetch.fetch_source(src, settings.replace(offline=True))
    assert len(server.log) == 1


def test_checkout_tarball_strips_components(tmp_path: Path, server: FileServer) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("pkg-1.0/configure", b"#!/bin/sh\n"), ("pkg-1.0/src/a.c", b"int a;\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    server.files["/up/pkg-1.0.tar.gz"] = data
    settings = make_settings(tmp_path)
    src = tarball(server.url("/up/pkg-1.0.tar.gz"), hashlib.sha256(data).hexdigest(), dest="third/pkg")
    dest = tmp_path / "tree"
    fetch.checkout(src, settings, dest)
    assert (dest / "third/pkg/configure").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "third/pkg/src/a.c").read_bytes() == b"int a;\n"
    assert os.access(dest / "third/pkg/configure", os.X_OK)
    assert fetch.commit_date(src, settings) is None


def test_unusable_names_and_pins_are_clear_errors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(FetchError, match="filename"):
        fetch.tarball_path(tarball("http://127.0.0.1:9/dir/.."), settings)
    with pytest.raises(FetchError, match="sha256"):
        fetch.fetch_source(tarball("http://127.0.0.1:9/x.tar.gz", sha="abc"), settings)


def test_complete_part_file_is_not_downloaded_again(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path)
    settings.downloads.mkdir(parents=True)
    (settings.downloads / "pkg.tar.gz.part").write_bytes(PAYLOAD)  # died before the rename
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD
    assert [s for *_x, s in server.log] == [416]


def test_stale_part_file_with_wrong_bytes_is_redone(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path)
    settings.downloads.mkdir(parents=True)
    (settings.downloads / "pkg.tar.gz.part").write_bytes(b"garbage" * 100)
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)
    assert path.read_bytes() == PAYLOAD
    assert [s for *_x, s in server.log] == [206, 200]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(tmp_path: Path, server: FileServer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    fake = _Tty()
    monkeypatch.setattr("sys.stderr", fake)
    fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), make_settings(tmp_path))
    text = fake.getvalue()
    assert text.startswith("\rpkg.tar.gz [") and "100.0%" in text and text.endswith("\n")


def test_connection_refused_is_retried_then_reported(tmp_path: Path, server: FileServer) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/pkg.tar.gz"
    server.files["/up/pkg.tar.gz"] = PAYLOAD
    settings = make_settings(tmp_path, mirrors=(dead.rsplit("/", 1)[0],))
    path = fetch.fetch_source(tarball(server.url("/up/pkg.tar.gz")), settings)  # dead mirror, then upstream
    assert path.read_bytes() == PAYLOAD
    with pytest.raises(FetchError) as info:
        fetch.fetch_source(tarball(dead, sha="1" * 64), make_settings(tmp_path / "x"))
    assert f"{dead}: gave up after {fetch.common.RETRIES + 1} attempts: ConnectionError" in str(info.value)


def test_unresolvable_host_is_tried_twice_not_five_times(tmp_path: Path) -> None:
    """A name that does not resolve (RFC 2606 .invalid: no network, no DNS, a typo) fails after
    DNS_RETRIES + 1 attempts with the resolver's message, not after the full retry budget."""
    url = "http://hermitbuild-test.invalid/pkg.tar.gz"
    with pytest.raises(FetchError) as info:
        fetch.fetch_source(tarball(url, sha="1" * 64), make_settings(tmp_path))
    text = str(info.value)
    assert fetch.common.DNS_RETRIES + 1 < fetch.common.RETRIES + 1
    assert f"{url}: gave up after {fetch.common.DNS_RETRIES + 1} attempts: ConnectionError" in text
    assert "hermitbuild-test.invalid" in text and "resolve" in text.lower()
    no_leftovers(make_settings(tmp_path), "pkg.tar.gz")


def test_a_trickling_server_is_cut_and_reported(tmp_path: Path, server: FileServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every half second (the hostile trial's one byte every 50 s, scaled): below
    download_min_rate over download_stall, so the transfer is cut, retried, then reported."""
    monkeypatch.setattr(fetch.common, "RETRIES", 1)
    server.files["/up/slow.tar.xz"] = PAYLOAD
    server.actions["/up/slow.tar.xz"] = ["trickle"] * 5
    settings = make_settings(tmp_path, download_stall="1s", download_min_rate="1K")
    start = time.monotonic()
    with pytest.raises(FetchError) as exc:
        fetch.fetch_source(tarball(server.url("/up/slow.tar.xz")), settings)
    assert time.monotonic() - start < 30
    text = str(exc.value)
    assert "stalled" in text and "download_min_rate" in text
    assert len(server.requests_for("/up/slow.tar.xz")) == 2  # RETRIES + 1: a trickle is not progress


def test_the_download_deadline_stops_a_slow_file(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/slow.tar.xz"] = PAYLOAD
    server.actions["/up/slow.tar.xz"] = ["trickle"] * 5
    server.trickle_interval = 0.2
    server.trickle_bytes = 1000
    settings = make_settings(tmp_path, download_stall="30s", download_min_rate="1", download_deadline="2s")
    start = time.monotonic()
    with pytest.raises(FetchError) as exc:
        fetch.fetch_source(tarball(server.url("/up/slow.tar.xz")), settings)
    assert time.monotonic() - start < 10
    assert "download_deadline (2s)" in str(exc.value)
    assert (settings.downloads / "slow.tar.xz.part").stat().st_size > 0  # kept for a resume


def test_a_redirect_loop_is_not_retried(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/loop.tar.xz"] = PAYLOAD
    server.actions["/up/loop.tar.xz"] = ["loop"] * 200
    start = time.monotonic()
    with pytest.raises(FetchError) as exc:
        fetch.fetch_source(tarball(server.url("/up/loop.tar.xz")), make_settings(tmp_path))
    assert "redirect loop" in str(exc.value)
    assert len(server.requests_for("/up/loop.tar.xz")) <= 31 and time.monotonic() - start < 10


def test_a_drop_before_the_first_64k_keeps_what_arrived(tmp_path: Path, server: FileServer) -> None:
    server.files["/up/big.tar.xz"] = PAYLOAD
    server.actions["/up/big.tar.xz"] = ["drop-early"]
    path = fetch.fetch_source(tarball(server.url("/up/big.tar.xz")), make_settings(tmp_path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    log = server.requests_for("/up/big.tar.xz")
    assert [status for _p, _r, status in log] == [200, 206] and log[1][1] == "bytes=1000-"
