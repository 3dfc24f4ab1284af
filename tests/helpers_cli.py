"""Helpers for tests that run the public commands (`doit ...`) in a subprocess."""

from __future__ import annotations

import subprocess


def failed_cleanly(done: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with a clear error: a non-zero exit, no traceback, and each of
    ``needles`` in its output (returned)."""
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"
    return out
