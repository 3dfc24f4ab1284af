"""An OCI registry as the remote artifact cache (the OCI distribution API, e.g. ghcr.io, GitLab's
registry, Docker Hub, a distribution registry on loopback).

Contract:

- ``remote_cache: oci://HOST[:PORT]/REPOSITORY`` speaks HTTPS; ``oci+http://`` plain HTTP (a
  registry on loopback).  :func:`parse_oci_url` checks the form and names the fix.
- One registry artifact per cache key, an OCI image manifest tagged with the key::

      config      media type CONFIG_TYPE: the artifact's manifest.json (key, inputs, file list)
      layers      [the artifact file itself, media type LAYER_TYPE (zstd) or LAYER_TYPE_GZIP]
      annotations dev.hermitbuild.key, org.opencontainers.image.created, ...title

  Pushing uploads the blobs first (skipped when the registry has them) and the manifest last,
  so a half-pushed artifact is a miss.  Mode ``read`` sends nothing but GET and HEAD.
- Pulling reads the manifest by tag, which must hold exactly one layer of our media types
  with a ``sha256:`` digest; the blob is streamed to ``.part`` and hashed and must match that
  digest and carry the key in its own manifest (as strict as the HTTP store).
- Credentials: the token setting (``remote_cache_token``: ``USER:SECRET``, or a bare token
  used as the password, e.g. ``GITHUB_TOKEN`` for ghcr.io), else the user's podman/docker
  credentials file for that host (``Settings.registry_auth_files``: ``REGISTRY_AUTH_FILE``,
  ``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.config/containers/auth.json``,
  ``~/.docker/config.json``; ``auth`` entries, not credential helpers).  A 401 challenge is answered once per request:
  ``Basic`` with the credentials, ``Bearer realm=...`` by fetching a token for the
  repository's scope from the realm (with the credentials, or anonymously).
- Failures behave as in :class:`~hermitbuild.cache.remote.HttpStore`: never raised; the
  registry down marks the remote down for the run; refusals are warnings.

Why requests and not the ``oras`` SDK: the cache needs five calls of the distribution API
with our own verification and our never-raise contract, and oras-py pulls to file names
taken from annotations and raises untyped errors; requests is already a dependency.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urljoin

from ..errors import ArtifactError, ConfigError
from ..fsutil import sha256_file
from ..settings import format_size
from .artifact import read_manifest
from .keys import check_key
from .remote import HttpStore, _Unreachable

if TYPE_CHECKING:  # pragma: no cover
    import requests

logger = logging.getLogger(__name__)

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.hermitbuild.artifact.v1"
CONFIG_TYPE = "application/vnd.hermitbuild.config.v1+json"
LAYER_TYPE = "application/vnd.hermitbuild.artifact.v1.tar+zstd"
LAYER_TYPE_GZIP = "application/vnd.hermitbuild.artifact.v1.tar+gzip"
_MAX_MANIFEST = 4 * 1024 * 1024
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_URL_RE = re.compile(r"^oci(\+http)?://([A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(.+)$")


def parse_oci_url(url: str) -> tuple[str, str, str]:
    """``(http base, host, repository)`` of an ``oci://`` / ``oci+http://`` URL (ConfigError if bad)."""
    m = _URL_RE.match(url or "")
    if not m:
        raise ConfigError(f"remote_cache {url!r} is not an OCI registry URL",
                          "write oci://REGISTRY/REPOSITORY (HTTPS), e.g. oci://ghcr.io/owner/hermit-cache, "
                          "or oci+http://127.0.0.1:5000/hermit/cache for a registry on loopback",
                          field="remote_cache")
    repo = m.group(3).rstrip("/")
    if not _REPO_RE.match(repo):
        raise ConfigError(f"remote_cache {url!r}: {repo!r} is not a valid repository name",
                          "use lower-case letters, digits and . _ - separated by /, "
                          "e.g. oci://ghcr.io/owner/hermit-cache", field="remote_cache")
    scheme = "http" if m.group(1) else "https"
    return f"{scheme}://{m.group(2)}", m.group(2), repo


def registry_credentials(host: str, token: str = "",
                         auth_files: Sequence[Path] = ()) -> tuple[str, str] | None:
    """(user, secret) for ``host``: from the token setting, else the first podman/docker auth
    file (``Settings.registry_auth_files``) with an ``auth`` entry for it."""
    if token:
        user, sep, secret = token.partition(":")
        return (user, secret) if sep and user and secret else ("hermitbuild", token)
    for name in auth_files:
        try:
            auths = json.loads(Path(name).read_text(encoding="utf-8")).get("auths") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for entry_host, entry in auths.items() if isinstance(auths, dict) else ():
            bare = re.sub(r"^https?://", "", str(entry_host)).split("/")[0]
            if bare != host or not isinstance(entry, dict) or not entry.get("auth"):
                continue
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                user, sep, secret = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
                if sep:
                    logger.debug("registry credentials for %s from %s", host, name)
                    return user, secret
    return None


def _challenge(resp: "requests.Response") -> tuple[str, dict[str, str]]:
    header = resp.headers.get("WWW-Authenticate", "")
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class OciRemoteCache(HttpStore):
    """A remote artifact cache in an OCI registry; see the module docstring."""

    def __init__(self, url: str, mode: str = "read", token: str = "",
                 timeout: tuple[float, float] = (5.0, 60.0), retries: int = 2, backoff: float = 0.5,
                 auth_files: Sequence[Path] = ()) -> None:
        self.api, self.host, self.repo = parse_oci_url(url)
        super().__init__(url, mode, timeout, retries, backoff)
        self.credentials = registry_credentials(self.host, token, auth_files)
        self._scopes: set[str] = set()

    # ---- the distribution API, with the 401 challenge answered once per request
    def _v2(self, path: str) -> str:
        return f"{self.api}/v2/{self.repo}/{path}"

    def _call(self, method: str, url: str, actions: str = "pull", **kwargs: Any) -> "requests.Response":
        resp = self._request(method, url, **kwargs)
        if resp.status_code != 401:
            return resp
        if not self._authorize(resp, actions):
            return resp
        resp.close()
        return self._request(method, url, **kwargs)

    def _authorize(self, resp: "requests.Response", actions: str) -> bool:
        """Answer a 401 challenge; False when there is nothing (more) to try."""
        scheme, params = _challenge(resp)
        if scheme == "basic":
            if self.credentials is None or self.session.auth == self.credentials:
                return False
            self.session.auth = self.credentials
            return True
        if scheme != "bearer" or not params.get("realm"):
            return False
        scope = params.get("scope") or f"repository:{self.repo}:{actions}"
        if scope in self._scopes:
            return False  # a token for this scope was refused already
        self._scopes.add(scope)
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = self.credentials
        tok = self._request("GET", params["realm"], params=query, auth=auth)
        try:
            if tok.status_code != 200:
                logger.warning("registry %s: the token service %s refused %s (HTTP %d)%s", self.host,
                               params["realm"], scope, tok.status_code,
                               "" if auth else "; no credentials were found for this registry")
                return False
            data = tok.json()
        except ValueError:
            return False
        finally:
            tok.close()
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return False
        self.session.auth = None
        self.session.headers["Authorization"] = f"Bearer {token}"
        return True

    # ---- the store interface
    def probe(self) -> tuple[str, str]:
        """("ok" | "fail", what was found): reachable, readable and (readwrite) writable."""
        try:
            resp = self._call("GET", self._v2("tags/list"))
            resp.close()
            if resp.status_code in (401, 403):
                return "fail", (f"reading is refused (HTTP {resp.status_code})"
                                + ("" if self.credentials else "; no credentials found for " + self.host))
            if resp.status_code not in (200, 404):
                return "fail", f"reading answers HTTP {resp.status_code}"
            if self.mode != "readwrite":
                return "ok", "reachable and readable"
            resp = self._call("POST", self._v2("blobs/uploads/"), actions="pull,push")
            resp.close()
            if resp.status_code != 202 or not resp.headers.get("Location"):
                return "fail", f"readable, but writing is refused (HTTP {resp.status_code})"
            self._request("DELETE", urljoin(self.api + "/", resp.headers["Location"])).close()
        except _Unreachable as exc:
            return "fail", f"unreachable ({exc})"
        return "ok", "reachable, readable and writable"

    def has(self, key: str) -> bool:
        if self.down:
            return False
        try:
            resp = self._call("HEAD", self._v2(f"manifests/{check_key(key)}"),
                              headers={"Accept": MANIFEST_TYPE})
        except _Unreachable as exc:
            self._unreachable(f"checking {key[:12]}", exc)
            return False
        resp.close()
        if resp.status_code in (401, 403):
            self._refused("checking", key, resp)
        return resp.status_code == 200

    def _layer(self, key: str, resp: "requests.Response") -> tuple[str, int] | None:
        """The artifact layer's (digest, size) from a manifest response, or None (logged)."""
        body = resp.content[:_MAX_MANIFEST + 1]
        try:
            manifest = json.loads(body) if len(body) <= _MAX_MANIFEST else None
        except ValueError:
            manifest = None
        layers = manifest.get("layers") if isinstance(manifest, dict) else None
        ours = [layer for layer in layers or () if isinstance(layer, dict)
                and layer.get("mediaType") in (LAYER_TYPE, LAYER_TYPE_GZIP)]
        if len(ours) != 1 or not isinstance(ours[0].get("digest"), str) \
                or not _DIGEST_RE.match(ours[0]["digest"]) or not isinstance(ours[0].get("size"), int):
            logger.warning("registry %s: the manifest tagged %s is not a hermitbuild artifact "
                           "(one layer of type %s with a sha256 digest); ignoring it",
                           self.base_url, key[:12], LAYER_TYPE)
            return None
        return ours[0]["digest"], ours[0]["size"]

    def download(self, key: str, dest: Path) -> tuple[Path, str] | None:
        """Pull the artifact of ``key`` to ``dest``; return the path and its sha256, or None."""
        if self.down:
            return None
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        with self._download_guard(key, part):
            resp = self._call("GET", self._v2(f"manifests/{check_key(key)}"),
                              headers={"Accept": MANIFEST_TYPE})
            if resp.status_code == 404:
                resp.close()
                logger.info("remote cache miss for %s", key[:12])
                return None
            if resp.status_code != 200:
                resp.close()
                self._refused("reading", key, resp)
                return None
            layer = self._layer(key, resp)
            if layer is None:
                return None
            digest, size = layer
            got = self._fetch_to(lambda: self._call("GET", self._v2(f"blobs/{digest}"), stream=True), key, part,
                                 f"registry {self.base_url}: the manifest of {key[:12]} names blob "
                                 f"{digest[:19]}, which is missing")
            if got is None:
                return None
            expected = digest.split(":", 1)[1]
            if not self._check_downloaded(key, part, got, expected):
                return None
            if part.stat().st_size != size:
                logger.warning("registry %s: the artifact of %s has %d bytes, the manifest says %d; "
                               "rejected", self.base_url, key[:12], part.stat().st_size, size)
                part.unlink()
                return None
            os.replace(part, dest)
            logger.info("pulled %s from %s", key[:12], self.base_url)
            return dest, expected
        return None

    def _push_blob(self, key: str, digest: str, size: int, body: Any) -> bool:
        resp = self._call("HEAD", self._v2(f"blobs/{digest}"), actions="pull,push")
        resp.close()
        if resp.status_code == 200:
            return True
        resp = self._call("POST", self._v2("blobs/uploads/"), actions="pull,push")
        resp.close()
        location = resp.headers.get("Location")
        if resp.status_code != 202 or not location:
            self._refused("writing", key, resp)
            return False
        url = urljoin(self.api + "/", location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        resp = self._call("PUT", url, actions="pull,push", body=body,
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(size)})
        resp.close()
        if resp.status_code not in (201, 204):
            self._refused("writing", key, resp)
            return False
        return True

    def put(self, key: str, path: Path) -> bool:
        """Push an artifact (blobs, then the manifest tagged with the key); False on any trouble."""
        if not self._can_push(key):
            return False
        path = Path(path)
        try:
            artifact_manifest = read_manifest(path)
        except ArtifactError as exc:
            logger.warning("not pushing %s: %s", key[:12], exc.why)
            return False
        config = json.dumps(artifact_manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        layer_hex, layer_size = sha256_file(path)
        layer_digest = "sha256:" + layer_hex
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE_GZIP if gz else LAYER_TYPE, "digest": layer_digest,
                        "size": layer_size,
                        "annotations": {"org.opencontainers.image.title": f"{key}.tar.{'gz' if gz else 'zst'}"}}],
            "annotations": {"dev.hermitbuild.key": key,
                            "org.opencontainers.image.created": created.replace("+00:00", "Z")},
        }
        try:
            if not self._push_blob(key, config_digest, len(config), lambda: config):
                return False
            if not self._push_blob(key, layer_digest, layer_size, lambda: open(path, "rb")):
                return False
            resp = self._call("PUT", self._v2(f"manifests/{check_key(key)}"), actions="pull,push",
                              body=lambda: json.dumps(manifest).encode("utf-8"),
                              headers={"Content-Type": MANIFEST_TYPE})
            resp.close()
            if resp.status_code not in (200, 201):
                self._refused("writing", key, resp)
                return False
        except _Unreachable as exc:
            self._unreachable(f"pushing {key[:12]}", exc)
            return False
        logger.info("pushed %s (%s) to %s", key[:12], format_size(layer_size), self.base_url)
        return True
