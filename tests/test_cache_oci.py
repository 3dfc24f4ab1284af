"""The OCI registry backend of the remote cache, against a real registry (docker-registry 2.8,
htpasswd authentication) on 127.0.0.1: push, pull onto an empty local cache, credentials from
the token and from an auth file, and each fault the HTTP backend handles (corrupt blob, a
manifest naming another artifact, the registry down, 401)."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import pytest
import requests

from hermitbuild.cache import (LocalCache, OciRemoteCache, RemoteCache, install_from_cache, open_remote,
                               pack_artifact, parse_oci_url, publish)
from hermitbuild.cache.oci import CONFIG_TYPE, LAYER_TYPE, MANIFEST_TYPE, registry_credentials
from hermitbuild.errors import ConfigError
from hermitbuild.settings import load_settings, registry_auth_files

from helpers_cache import REMOTE_INPUTS, art, key, no_outage_memory, stage, snapshot  # noqa: F401
from helpers_nginx import free_port
from helpers_registry import Registry, registry  # noqa: F401 (fixture)

INPUTS = REMOTE_INPUTS


def oci(reg: Registry, mode: str = "readwrite", token: str | None = None, **kw) -> OciRemoteCache:
    return OciRemoteCache(reg.url(), mode, reg.token if token is None else token, timeout=(2, 10),
                          retries=1, backoff=0.05, **kw)


def registry_manifest(reg: Registry, k: str) -> dict:
    resp = requests.get(f"http://127.0.0.1:{reg.port}/v2/hermit/cache/manifests/{k}",
                        headers={"Accept": MANIFEST_TYPE}, auth=(reg.user, reg.password), timeout=5)
    resp.raise_for_status()
    return resp.json()


def test_push_then_pull_onto_an_empty_local_cache(tmp_path: Path, registry: Registry, stage: Path,
                                                   art: Path) -> None:
    publish(key(1), art, LocalCache(tmp_path / "c1", 0), oci(registry))
    m = registry_manifest(registry, key(1))
    assert m["config"]["mediaType"] == CONFIG_TYPE and m["annotations"]["dev.hermitbuild.key"] == key(1)
    (layer,) = m["layers"]
    assert layer["mediaType"] == LAYER_TYPE and layer["size"] == art.stat().st_size
    assert registry.blob_file(layer["digest"]).read_bytes() == art.read_bytes()
    config = json.loads(registry.blob_file(m["config"]["digest"]).read_bytes())
    assert config["key"] == key(1) and {f["path"] for f in config["files"]} >= {"lib/libhermit.a"}

    reader = oci(registry, "read")
    assert reader.has(key(1)) and not reader.has(key(2))
    prefix = tmp_path / "prefix"
    assert install_from_cache(key(1), prefix, LocalCache(tmp_path / "c2", 0), reader) is not None
    assert snapshot(prefix) == snapshot(stage)
    assert install_from_cache(key(2), tmp_path / "p2", LocalCache(tmp_path / "c3", 0), reader) is None


def test_a_second_push_reuses_the_blobs_and_read_mode_never_writes(tmp_path: Path, registry: Registry,
                                                                     art: Path) -> None:
    assert oci(registry).put(key(1), art)
    assert oci(registry).put(key(1), art), "pushing what is there already is fine"
    reader = oci(registry, "read")
    assert reader.put(key(2), art) is False
    assert not reader.has(key(2))
    log = registry.log
    assert log.count('"POST /v2/hermit/cache/blobs/uploads/') == 2, "blobs are not uploaded twice"


def test_credentials_from_an_auth_file(tmp_path: Path, registry: Registry, art: Path) -> None:
    assert oci(registry).put(key(1), art)
    auth = tmp_path / "auth.json"
    host = f"127.0.0.1:{registry.port}"
    auth.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(
        registry.token.encode()).decode()}}}))
    env = {"HOME": str(tmp_path), "REGISTRY_AUTH_FILE": str(auth)}
    files = registry_auth_files(env)
    assert files[0] == auth and registry_credentials(host, "", files) == (registry.user, registry.password)
    assert oci(registry, "read", token="", auth_files=files).has(key(1))
    docker = tmp_path / ".docker" / "config.json"
    docker.parent.mkdir()
    shutil.move(auth, docker)
    assert oci(registry, "read", token="", auth_files=registry_auth_files({"HOME": str(tmp_path)})).has(key(1))
    # the settings carry the same list, read from the environment once at load
    assert load_settings(tmp_path, environ={"HOME": str(tmp_path)}).registry_auth_files[-1] == docker


def test_refused_credentials_are_warnings_not_outages(tmp_path: Path, registry: Registry, art: Path,
                                                      caplog) -> None:
    assert oci(registry).put(key(1), art)
    wrong = oci(registry, "readwrite", token=f"{registry.user}:wrong")
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert wrong.get(key(1), tmp_path / "dl" / "x") is None
        assert wrong.put(key(2), art) is False
    assert "HTTP 401" in caplog.text and "credentials" in caplog.text
    assert not wrong.down, "a refusal does not mark the registry down"
    assert wrong.probe()[0] == "fail"
    anonymous = oci(registry, "read", token="")
    status, detail = anonymous.probe()
    assert status == "fail" and "no credentials found" in detail
    assert oci(registry).probe() == ("ok", "reachable, readable and writable")


def test_corrupt_blob_is_rejected_and_the_recipe_built(tmp_path: Path, registry: Registry, art: Path,
                                                        caplog) -> None:
    assert oci(registry).put(key(1), art)
    blob = registry.blob_file(registry_manifest(registry, key(1))["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    prefix = tmp_path / "prefix"
    local = LocalCache(tmp_path / "c", 0)
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert install_from_cache(key(1), prefix, local, oci(registry, "read")) is None
    assert "corrupt" in caplog.text
    assert snapshot(prefix) == {} and not local.has(key(1))
    assert list((tmp_path / "c").rglob("*.part")) == []


def test_a_manifest_naming_another_artifact_is_rejected(tmp_path: Path, registry: Registry, stage: Path,
                                                        caplog) -> None:
    """The tag of key 1 points at the (valid, correctly digested) artifact of key 2."""
    other = pack_artifact(stage, key(2), INPUTS, tmp_path / "b.tar.zst")
    assert oci(registry).put(key(2), other)
    m = registry_manifest(registry, key(2))
    resp = requests.put(f"http://127.0.0.1:{registry.port}/v2/hermit/cache/manifests/{key(1)}",
                        data=json.dumps(m), headers={"Content-Type": MANIFEST_TYPE},
                        auth=(registry.user, registry.password), timeout=5)
    assert resp.status_code == 201, resp.text
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert install_from_cache(key(1), tmp_path / "p", LocalCache(tmp_path / "c", 0),
                                  oci(registry, "read")) is None
    assert "carries key" in caplog.text


def test_a_manifest_that_is_not_ours_is_ignored(tmp_path: Path, registry: Registry, art: Path,
                                                caplog) -> None:
    assert oci(registry).put(key(1), art)
    m = registry_manifest(registry, key(1))
    m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    requests.put(f"http://127.0.0.1:{registry.port}/v2/hermit/cache/manifests/{key(1)}",
                 data=json.dumps(m), headers={"Content-Type": MANIFEST_TYPE},
                 auth=(registry.user, registry.password), timeout=5).raise_for_status()
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert oci(registry, "read").get(key(1), tmp_path / "dl" / "x") is None
    assert "not a hermitbuild artifact" in caplog.text


def test_registry_down_falls_back_at_once(tmp_path: Path, registry: Registry, art: Path, caplog) -> None:
    assert oci(registry).put(key(1), art)
    registry.stop()
    remote = oci(registry, "read")
    with caplog.at_level(logging.WARNING, logger="hermitbuild.cache"):
        assert remote.get(key(1), tmp_path / "dl" / "x") is None
    assert "unreachable" in caplog.text and remote.down
    assert not oci(registry, "read").has(key(1)), "the outage is remembered for the run"
    closed = OciRemoteCache(f"oci+http://127.0.0.1:{free_port()}/hermit/cache", "read", "",
                            timeout=(1, 2), retries=0)
    assert closed.probe()[0] == "fail"


def test_urls_and_settings() -> None:
    assert parse_oci_url("oci://ghcr.io/owner/hermit-cache") == ("https://ghcr.io", "ghcr.io",
                                                                 "owner/hermit-cache")
    assert parse_oci_url("oci+http://127.0.0.1:5000/a/b") == ("http://127.0.0.1:5000",
                                                              "127.0.0.1:5000", "a/b")
    for bad in ("oci://ghcr.io", "oci://ghcr.io/Owner/Cache", "oci://ghcr.io/a//b", "http://x"):
        with pytest.raises(ConfigError):
            parse_oci_url(bad)
    assert isinstance(open_remote("oci://ghcr.io/o/c", "read"), OciRemoteCache)
    assert isinstance(open_remote("https://cache.example.org/h", "read"), RemoteCache)
    assert registry_credentials("ghcr.io", "ghp_abc") == ("hermitbuild", "ghp_abc")
    assert registry_credentials("ghcr.io", "me:ghp_abc") == ("me", "ghp_abc")


def test_a_bad_oci_url_in_the_settings_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "hermitbuild.yaml").write_text('remote_cache_mode: read\nremote_cache: "oci://ghcr.io/Owner"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    err = info.value
    assert err.line == 2 and "oci://ghcr.io/OWNER/hermit-cache" in err.fix


def test_bearer_challenge_is_answered_with_a_token_for_the_scope() -> None:
    """ghcr.io-style token auth (a boundary fake: a loopback server that only speaks the
    challenge): the token comes from the realm, fetched with the credentials, for the scope."""
    import http.server
    import threading

    seen: list[tuple[str, str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _reply(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            seen.append(("GET", self.path, self.headers.get("Authorization", "")))
            if self.path.startswith("/token?"):
                ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"me:ghp_x").decode()
                return self._reply(200 if ok else 401, json.dumps({"token": "tok123"}).encode())
            self.do_HEAD()

        def do_HEAD(self) -> None:  # noqa: N802
            if self.command == "HEAD":
                seen.append(("HEAD", self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != "Bearer tok123":
                realm = f"http://127.0.0.1:{self.server.server_port}/token"
                return self._reply(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",'
                                                 f'scope="repository:o/c:pull"'})
            self._reply(200)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"oci+http://127.0.0.1:{server.server_port}/o/c"
        assert OciRemoteCache(url, "read", "me:ghp_x", timeout=(2, 5), retries=0).has(key(1))
        token_requests = [p for m, p, _ in seen if p.startswith("/token")]
        assert token_requests == ["/token?scope=repository%3Ao%2Fc%3Apull&service=fake"]
        assert not OciRemoteCache(url, "read", "me:wrong", timeout=(2, 5), retries=0).has(key(1))
    finally:
        server.shutdown()
        server.server_close()
