"""The HTTP(S) remote artifact store (nginx WebDAV, bazel-remote, presigned URLs).

Contract: see :mod:`hermitbuild.cache` (Remote cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .. import __version__
from ..errors import ArtifactError, ConfigError
from ..fsutil import sha256_file
from ..settings import format_size

if TYPE_CHECKING:  # pragma: no cover
    import requests

logger = logging.getLogger(__name__)
from .keys import check_key, checksum_key
from .artifact import (_CHUNK, _SHA_RE, read_manifest)


# --- remote cache: the shared HTTP part, then the plain-HTTP store

def _requests() -> Any:
    import requests

    return requests


class _Unreachable(Exception):
    pass


class HttpStore:
    """What every HTTP(S)-based remote shares: a session, timeouts, retries, the outage memory.

    Subclasses implement ``probe``, ``has``, ``download`` and ``put`` with this contract:
    network trouble never raises (a warning, ``None``/``False``, and the store is marked down
    for ``DOWN_SECONDS``); refusals (401/403/4xx) are warnings that do not mark it down."""

    def __init__(self, base_url: str, mode: str, timeout: tuple[float, float], retries: int,
                 backoff: float) -> None:
        if mode not in ("read", "readwrite"):
            raise ConfigError(f"remote cache mode must be read or readwrite, got {mode!r}",
                              "set remote_cache_mode to read or readwrite (or off for no remote)",
                              field="remote_cache_mode")
        self.base_url = base_url.rstrip("/")
        self.mode = mode
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        import requests  # only a remote needs it (an import costs 0.3 s on every doit run)

        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"hermitbuild/{__version__}"

    # A remote found unreachable is skipped by every store of this process for a while,
    # so a build of many recipes (one store each) waits for a dead server only once.
    DOWN_SECONDS = 900.0
    _down_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, mode={self.mode!r})"

    @property
    def down(self) -> bool:
        """True while this remote is considered unreachable (skipped without a request)."""
        return HttpStore._down_until.get(self.base_url, 0.0) > time.monotonic()

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            HttpStore._down_until[self.base_url] = time.monotonic() + self.DOWN_SECONDS
        else:
            HttpStore._down_until.pop(self.base_url, None)

    @classmethod
    def forget_outages(cls) -> None:
        """Forget every remote marked unreachable (for tests and long-lived processes)."""
        HttpStore._down_until.clear()

    def _request(self, method: str, url: str, body: Callable[[], Any] | None = None,
                 **kwargs: Any) -> "requests.Response":
        """One request with retries on network errors and 5xx; raises _Unreachable at the end."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                data = body() if body is not None else None
                try:
                    resp = self.session.request(method, url, data=data, timeout=self.timeout, **kwargs)
                finally:
                    if hasattr(data, "close"):
                        data.close()
            except _requests().RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, _requests().ReadTimeout):
                    break  # a server that does not answer in time will not answer faster now
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                resp.close()
                continue
            return resp
        raise _Unreachable(last)

    def _unreachable(self, what: str, exc: _Unreachable) -> None:
        self.down = True
        logger.warning("remote cache %s is unreachable (%s while %s); building locally and not "
                       "using the remote for the rest of this run", self.base_url, exc, what)

    def _refused(self, what: str, key: str, resp: "requests.Response") -> None:
        hint = " (check the token or credentials)" if resp.status_code in (401, 403) else ""
        logger.warning("remote cache %s refused %s %s: HTTP %d%s", self.base_url, what, key[:12],
                       resp.status_code, hint)

    def _can_push(self, key: str) -> bool:
        if self.mode != "readwrite":
            logger.info("remote cache is read-only; not pushing %s", key[:12])
            return False
        return not self.down

    @contextlib.contextmanager
    def _download_guard(self, key: str, part: Path) -> Iterator[None]:
        """Network trouble or a local write error inside the block: logged, ``part`` removed."""
        try:
            yield
            return
        except _Unreachable as exc:
            self._unreachable(f"downloading {key[:12]}", exc)
        except OSError as exc:
            logger.warning("remote cache: cannot write %s: %s", part, exc)
        with contextlib.suppress(OSError):
            part.unlink()

    def get(self, key: str, dest: Path) -> Path | None:
        """Download ``key`` to ``dest`` (verified), or None on any trouble."""
        got = self.download(key, dest)
        return None if got is None else got[0]

    def download(self, key: str, dest: Path) -> tuple[Path, str] | None:  # pragma: no cover
        raise NotImplementedError

    def _fetch_to(self, get: Callable[[], "requests.Response"], key: str, part: Path,
                  missing: str) -> str | None:
        """GET (with ``get``) into ``part``, retrying an interrupted transfer; its sha256, or None
        when the server answered otherwise than 200 (``missing`` is the warning for a 404)."""
        for attempt in range(self.retries + 1):
            resp = get()
            if resp.status_code != 200:
                resp.close()
                if resp.status_code == 404:
                    logger.warning("%s", missing)
                else:
                    self._refused("reading", key, resp)
                return None
            try:
                return self._stream_to(resp, part)
            except (_requests().RequestException, ConnectionError) as exc:
                if attempt == self.retries:
                    raise _Unreachable(f"download interrupted: {exc}") from None
        return None

    def _stream_to(self, resp: "requests.Response", part: Path) -> str:
        """Write a streamed response to ``part``; return its sha256 (network errors propagate)."""
        h = hashlib.sha256()
        part.parent.mkdir(parents=True, exist_ok=True)
        with resp, open(part, "wb") as out:
            for chunk in resp.iter_content(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        return h.hexdigest()

    def _check_downloaded(self, key: str, part: Path, digest: str, expected: str) -> bool:
        """The downloaded file has the expected sha256 and carries ``key`` (else it is deleted)."""
        if digest != expected:
            logger.warning("remote cache artifact %s is corrupt (sha256 %s..., expected %s...); "
                           "rejected, the recipe will be built", key[:12], digest[:16], expected[:16])
            part.unlink()
            return False
        try:
            manifest_key = read_manifest(part).get("key")
        except ArtifactError as exc:
            manifest_key = None
            logger.warning("remote cache artifact %s is unreadable: %s", key[:12], exc.why)
        if manifest_key != key:
            if manifest_key is not None:
                logger.warning("remote cache artifact %s carries key %s; rejected", key[:12],
                               str(manifest_key)[:12])
            part.unlink()
            return False
        return True


class RemoteCache(HttpStore):
    """An HTTP(S) artifact store: HEAD/GET/PUT on ``<base>/<key>``; see the module docstring."""

    def __init__(self, base_url: str, mode: str = "read", token: str = "",
                 timeout: tuple[float, float] = (5.0, 60.0), retries: int = 2,
                 backoff: float = 0.5) -> None:
        if not re.match(r"^https?://", base_url or ""):
            raise ConfigError(f"remote cache URL {base_url!r} is not http(s)",
                              "set remote_cache to e.g. https://cache.example.org/hermit",
                              field="remote_cache")
        super().__init__(base_url, mode, timeout, retries, backoff)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"

    def checksum_url(self, key: str) -> str:
        return f"{self.base_url}/{checksum_key(key)}"

    _PROBE = "hermitbuild-doctor-probe"

    def probe(self) -> tuple[str, str]:
        """("ok" | "fail", what was found): reachable, readable and (readwrite) writable.

        Reads the checksum object of a key that does not exist (200 or 404 is fine) and, in
        readwrite mode, writes and deletes one small probe object.  Never prints the token."""
        try:
            resp = self._request("HEAD", self.checksum_url("0" * 64), allow_redirects=True)
            resp.close()
            if resp.status_code in (401, 403):
                return "fail", f"reading is refused (HTTP {resp.status_code})"
            if resp.status_code not in (200, 404):
                return "fail", f"reading answers HTTP {resp.status_code}"
            if self.mode != "readwrite":
                return "ok", "reachable and readable"
            url = f"{self.base_url}/{self._PROBE}"
            resp = self._request("PUT", url, body=lambda: b"probe\n", headers={"Content-Type": "text/plain"})
            resp.close()
            if resp.status_code not in (200, 201, 204):
                return "fail", f"readable, but writing is refused (HTTP {resp.status_code})"
            self._request("DELETE", url).close()
        except _Unreachable as exc:
            return "fail", f"unreachable ({exc})"
        return "ok", "reachable, readable and writable"

    def has(self, key: str) -> bool:
        if self.down:
            return False
        try:
            resp = self._request("HEAD", self.checksum_url(key), allow_redirects=True)
        except _Unreachable as exc:
            self._unreachable(f"checking {key[:12]}", exc)
            return False
        resp.close()
        if resp.status_code in (401, 403):
            logger.warning("remote cache %s refused access (HTTP %d): check the token",
                           self.base_url, resp.status_code)
        return resp.status_code == 200

    def download(self, key: str, dest: Path) -> tuple[Path, str] | None:
        """Download ``key`` to ``dest``, verified against its checksum object; return the path
        and that sha256, or None on any trouble."""
        if self.down:
            return None
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        with self._download_guard(key, part):
            resp = self._request("GET", self.checksum_url(key))
            if resp.status_code == 404:
                logger.info("remote cache miss for %s", key[:12])
                return None
            if resp.status_code != 200:
                self._refused("reading", key, resp)
                return None
            fields = resp.text.split()
            if not fields or not _SHA_RE.match(fields[0]):
                logger.warning("remote cache: the checksum object of %s is malformed; ignoring it",
                               key[:12])
                return None
            expected = fields[0]
            digest = self._fetch_to(lambda: self._request("GET", self.url(key), stream=True), key, part,
                                    f"remote cache: the checksum of {key[:12]} exists but the artifact "
                                    "does not")
            if digest is None or not self._check_downloaded(key, part, digest, expected):
                return None
            os.replace(part, dest)
            logger.info("downloaded %s from the remote cache", key[:12])
            return dest, expected
        return None

    def put(self, key: str, path: Path) -> bool:
        """Upload an artifact and then its checksum object; False (never raises) when that did not work."""
        if not self._can_push(key):
            return False
        path = Path(path)
        digest, size = sha256_file(path)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = self._request("PUT", self.url(key), body=lambda: open(path, "rb"), headers=headers)
            resp.close()
            if resp.status_code not in (200, 201, 204):
                self._refused("writing", key, resp)
                return False
            side = f"{digest}  {key}\n".encode("ascii")
            resp = self._request("PUT", self.checksum_url(key), body=lambda: side,
                                 headers={"Content-Type": "text/plain"})
            resp.close()
            if resp.status_code not in (200, 201, 204):
                self._refused("writing", key, resp)
                return False
        except _Unreachable as exc:
            self._unreachable(f"uploading {key[:12]}", exc)
            return False
        logger.info("pushed %s (%s) to the remote cache", key[:12], format_size(size))
        return True
