"""Shared pytest configuration: the repository root on sys.path and a settings factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hermitbuild.settings import Settings  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Override watchers started by `doit` commands under test go away a minute after their
    last question (the shipped 4 h would keep them through the rest of the suite)."""
    os.environ.setdefault("HERMITBUILD_OVERRIDE_WATCH", "60s")


@pytest.fixture
def make_settings(tmp_path: Path):
    """Settings rooted at the real repository with every writable directory under tmp_path."""

    def factory(**changes) -> Settings:
        base = dict(
            root=ROOT,
            prefix=tmp_path / "prefix",
            build_dir=tmp_path / "build",
            cache_dir=tmp_path / "cache",
        )
        base.update(changes)
        return Settings(**base)

    return factory
