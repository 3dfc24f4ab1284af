"""The smoke gate: toolchain artifacts reach the remote cache only after the examples booted.

Contract:
- :func:`is_gated` is true when ``smoke_gate`` is on and the remote is read-write; then
  builds store artifacts locally only (``doit toolchain`` pushes at its end).
- :func:`enforce` takes the smoke test's result for the toolchain's recipes: it records
  the result in each installed artifact's manifest (:func:`record_and_push`), pushes them
  when it passed, and raises :class:`~hermitbuild.errors.HermitBuildError` (nothing
  pushed) when it did not.  Remote trouble never raises: it is a warning.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import build, cache
from .errors import HermitBuildError
from .qemu import SmokeResult
from .settings import Settings

logger = logging.getLogger(__name__)


def is_gated(settings: Settings) -> bool:
    """True when artifacts reach the remote only after the smoke test (``smoke_gate``)."""
    return settings.smoke_gate and settings.remote_cache_mode == "readwrite"


def record_and_push(names: Sequence[str], settings: Settings, smoke: Mapping[str, Any]) -> list[str]:
    """Record ``smoke`` in the installed artifacts of ``names``; push them when it passed.
    Returns the recipes pushed."""
    local, remote = cache.open_caches(settings)
    pushed: list[str] = []
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        key = build.installed_key(name, settings)
        artifact = local.get(key) if key else None
        if artifact is None:
            logger.warning("%s: no artifact in the local cache to record the smoke result in", name)
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".annotate-{name}-", dir=settings.build_dir))
        try:
            annotated = cache.annotate_artifact(artifact, {"smoke": dict(smoke)}, tmp / f"{key}.tar.zst")
            local.put(key, annotated, move=True, replace=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if smoke.get("passed") and remote is not None and remote.put(key, local.path(key)):
            pushed.append(name)
    return pushed


def enforce(names: Sequence[str], settings: Settings, result: SmokeResult) -> list[str]:
    """Record ``result``, push on success; a failed smoke test is an error and pushes nothing."""
    pushed = record_and_push(names, settings, result.to_manifest())
    if not result.passed:
        raise HermitBuildError("smoke test failed: the toolchain was not pushed to the remote cache",
                               result.summary(),
                               "fix the toolchain (see the logs under build/logs), or set smoke_gate: false "
                               "to push without booting")
    return pushed
