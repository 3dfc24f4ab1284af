"""The remote cache against a real nginx (WebDAV PUT) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

import pytest

from hermitbuild import cache
from hermitbuild.errors import CacheError
from hermitbuild.cache import (LocalCache, RemoteCache, cache_cli, checksum_key, compute_key, fetch_artifact,
                               install_from_cache, pack_artifact, publish)
from hermitbuild.recipe import Recipe, RecipeSet

from helpers_cache import (REMOTE_INPUTS, art, key, make_stage, no_outage_memory, recipe,  # noqa: F401
                           recipe_set, settings_at, snapshot, stage)
from helpers_nginx import NginxServer, free_port, nginx, nginx_token  # noqa: F401 (fixtures)

INPUTS = REMOTE_INPUTS


def fast(url: str, mode: str = "readwrite", token: str = "") -> RemoteCache:
    return RemoteCache(url, mode, token, timeout=(2, 10), retries=1, backoff=0.05)


def test_store_then_restore_on_a_fresh_local_cache(tmp_path: Path, nginx: NginxServer, stage: Path,
                                                   art: Path) -> None:
    remote = fast(nginx.url)
    publish(key(1), art, LocalCache(tmp_path / "cache1", 0), remote)
    assert nginx.stored(key(1)).read_bytes() == art.read_bytes()
    assert nginx.stored(checksum_key(key(1))).read_text().split()[0] == hashlib.sha256(
        art.read_bytes()).hexdigest()
    # artifact first, checksum second
    puts = [uri for m, uri, _ in nginx.requests() if m == "PUT"]
    assert puts == [f"/cache/{key(1)}", f"/cache/{checksum_key(key(1))}"]
    assert remote.has(key(1)) and not remote.has(key(2))
    # every object name is 64 hex digits: bazel-remote's /ac/<key> accepts the same requests
    assert all(re.fullmatch(r"/cache/[0-9a-f]{64}", uri) for _, uri, _ in nginx.requests())

    fresh = LocalCache(tmp_path / "cache2", 0)
    prefix = tmp_path / "prefix"
    restored = install_from_cache(key(1), prefix, fresh, fast(nginx.url, "read"))
    assert restored is not None and snapshot(prefix) == snapshot(stage)
    assert fresh.has(key(1))  # downloaded artifacts land in the local cache
    assert not list((tmp_path / "cache2" / ".incoming").iterdir())
    n = len(nginx.requests())
    assert install_from_cache(key(1), tmp_path / "prefix2", fresh, fast(nginx.url, "read")) is not None
    assert len(nginx.requests()) == n, "a local hit must not touch the remote"


def test_miss_returns_none(tmp_path: Path, nginx: NginxServer) -> None:
    lc = LocalCache(tmp_path / "c", 0)
    assert fetch_artifact(key(5), lc, fast(nginx.url)) is None
    assert install_from_cache(key(5), tmp_path / "p", lc, fast(nginx.url)) is None
    assert not (tmp_path / "p").exists() or snapshot(tmp_path / "p") == {}


def test_read_only_mode_never_puts(tmp_path: Path, nginx: NginxServer, art: Path, caplog) -> None:
    remote = fast(nginx.url, "read")
    with caplog.at_level(logging.INFO, logger="hermitbuild.cache"):
        assert remote.put(key(1), art) is False
        publish(key(1), art, LocalCache(tmp_path / "c", 0), remote)
    assert "read-only" in caplog.text
    settings = settings_at(tmp_path, remote_cache=nginx.url, remote_cache_mode="read")
    with pytest.raises(CacheError, match="not writable"):
        cache_cli(["push"], settings)
    assert "PUT" not in nginx.methods(), "a read-only client sent a PUT"
    # reading works in read-only mode
    assert fast(nginx.url).put(key(1), art)
    assert remote.get(key(1), tmp_path / "dl" / "x") is not None
    methods = nginx.methods()
    assert methods.count("PUT") == 2 and methods[-1] == "GET"


@pytest.mark.parametrize("damage", ["garbage", "truncate", "other-key"])
def test_corrupt_remote_artifact_is_rejected(tmp_path: Path, nginx: NginxServer, stage: Path,
                                             art: Path, damage: str, caplog) -> None:
    assert fast(nginx.url).put(key(1), art)
    stored = nginx.stored(key(1))
    if damage == "garbage":
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0x55
        stored.write_bytes(bytes(data))
    elif damage == "truncate":
        stored.write_bytes(stored.read_bytes()[:1000])
    else:  # a valid artifact of another key, with a matching checksum object: a lying server
        other = pack_artifact(stage, key(2), INPUTS, tmp_path / "other.tar.gz")
        shutil.copyfile(other, stored)
        nginx.stored(checksum_key(key(1))).write_text(
            f"{hashlib.sha256(other.read_bytes()).hexdigest()}  {key(1)}\n")
    lc = LocalCache(tmp_path / "c", 0)
    prefix = tmp_path / "prefix"
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert install_from_cache(key(1), prefix, lc, fast(nginx.url)) is None
    assert "rejected" in caplog.text or "corrupt" in caplog.text
    assert not lc.has(key(1))
    assert snapshot(prefix) == {}
    assert not list(tmp_path.rglob("*.part"))


def test_remote_down_falls_back_with_a_warning(tmp_path: Path, art: Path, caplog) -> None:
    port = free_port()  # nothing listens there
    remote = fast(f"http://127.0.0.1:{port}/cache")
    lc = LocalCache(tmp_path / "c", 0)
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert install_from_cache(key(1), tmp_path / "p", lc, remote) is None
        assert remote.down
        assert remote.has(key(1)) is False
        assert remote.put(key(1), art) is False
        publish(key(1), art, lc, remote)  # the local store still works
    assert "unreachable" in caplog.text and "building locally" in caplog.text
    assert caplog.text.count("unreachable") == 1, "warn once, then skip the remote"
    assert lc.has(key(1))
    # the next recipe opens its own RemoteCache: it skips the dead remote without a request
    again = fast(f"http://127.0.0.1:{port}/cache")
    assert again.down
    again.session.request = None  # any request would now raise TypeError
    assert fetch_artifact(key(2), lc, again) is None and again.put(key(2), art) is False


def test_slow_remote_times_out_and_falls_back(tmp_path: Path, caplog) -> None:
    """A server that accepts but never answers: the read timeout turns it into a local build."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        remote = RemoteCache(f"http://127.0.0.1:{srv.getsockname()[1]}/c", "read", "",
                             timeout=(1, 0.5), retries=0)
        with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
            assert fetch_artifact(key(1), LocalCache(tmp_path / "c", 0), remote) is None
        assert remote.down and "unreachable" in caplog.text
    finally:
        srv.close()


def test_bearer_token(tmp_path: Path, nginx_token: NginxServer, art: Path, caplog) -> None:
    good = fast(nginx_token.url, token="s3cret-token")
    assert good.put(key(1), art)
    assert good.get(key(1), tmp_path / "dl" / "a") is not None
    bad = fast(nginx_token.url, token="wrong")
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert bad.put(key(2), art) is False
        assert bad.get(key(1), tmp_path / "dl" / "b") is None
    assert "check the token" in caplog.text
    assert not bad.down, "an auth failure is not an outage"
    statuses = [(m, s) for m, _, s in nginx_token.requests()]
    assert ("PUT", 401) in statuses and ("PUT", 201) in statuses


def test_cli_push(tmp_path: Path, nginx: NginxServer, stage: Path, capsys) -> None:
    settings = settings_at(tmp_path, remote_cache=nginx.url, remote_cache_mode="readwrite")
    lc = LocalCache(settings.cache_dir, 0)
    for i in (1, 2):
        lc.put(key(i), pack_artifact(stage, key(i), INPUTS, tmp_path / f"{i}.tar.gz"))
    assert cache_cli(["push"], settings) == 0
    assert "pushed 2, already there 0, failed 0" in capsys.readouterr().out
    assert nginx.stored(key(2)).read_bytes() == lc.path(key(2)).read_bytes()
    assert cache_cli(["push", key(1), key(3)], settings) == 1
    out = capsys.readouterr().out
    assert f"{key(1)}  already on the remote" in out and f"{key(3)}  not in the local cache" in out
    assert cache_cli(["stats"], settings) == 0
    assert nginx.url in capsys.readouterr().out


# --------------------------------------------------------------------------- end to end

def _tree_id(rec: Recipe) -> str:
    return hashlib.sha256(rec.tree_owner.encode()).hexdigest()


def _image_id(image: str) -> str:
    return "img-" + image


def fake_toolchain_run(rs: RecipeSet, settings, local: LocalCache, remote: RemoteCache | None,
                       work: Path) -> dict[str, list[str]]:
    """What `doit toolchain` does per recipe, with a trivial 'build' that writes a few files."""
    built, restored = [], []
    prefix = settings.prefix
    for name in rs.order:
        rec = rs[name]
        k, inputs = compute_key(rec, rs, settings, tree_id=_tree_id, image_id=_image_id)
        if install_from_cache(k, prefix, local, remote) is not None:
            restored.append(name)
            continue
        stage = work / "stage" / name
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "bin").mkdir(parents=True)
        (stage / "bin" / f"{name}-tool").write_text(f"{name} {rec.version} built for {settings.target}\n")
        (stage / "share" / name).mkdir(parents=True)
        (stage / "share" / name / "version").write_text(rec.version)
        artifact = pack_artifact(stage, k, inputs, work / "out" / f"{name}.tar.gz")
        publish(k, artifact, local, remote)
        cache.restore_artifact(local.path(k), prefix, k)
        built.append(name)
    return {"built": built, "restored": restored}


def test_second_run_with_unchanged_inputs_builds_nothing(tmp_path: Path, nginx: NginxServer) -> None:
    rs = recipe_set(recipe("binutils"), recipe("gcc-stage1", depends=("binutils",)),
                    recipe("newlib", depends=("gcc-stage1",)), recipe("gcc", depends=("newlib",)))

    def run(n: int, rs: RecipeSet) -> tuple[dict, Path]:
        settings = settings_at(tmp_path / f"ws{n}", prefix=tmp_path / f"ws{n}" / "opt" / "hermit")
        settings = settings.replace(prefix=tmp_path / "opt" / "hermit")  # same prefix on every "runner"
        shutil.rmtree(settings.prefix, ignore_errors=True)
        local = LocalCache(tmp_path / f"ws{n}" / "cache", 0)  # every CI run starts with an empty cache
        return fake_toolchain_run(rs, settings, local, fast(nginx.url), tmp_path / f"ws{n}"), settings.prefix

    first, prefix = run(1, rs)
    assert first == {"built": list(rs.order), "restored": []}
    after_first = snapshot(prefix)
    second, prefix = run(2, rs)
    assert second == {"built": [], "restored": list(rs.order)}
    assert snapshot(prefix) == after_first
    # change newlib: it and everything after it is rebuilt, the rest restored
    changed = RecipeSet(recipes={**rs.recipes, "newlib": recipe("newlib", depends=("gcc-stage1",),
                                                                  version="4.0")}, order=rs.order)
    third, _ = run(3, changed)
    assert third == {"built": ["newlib", "gcc"], "restored": ["binutils", "gcc-stage1"]}
