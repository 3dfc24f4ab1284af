"""Shared helpers for the cache tests: stage trees, tree snapshots, hand-made artifacts, recipes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Iterable

import pytest

from hermitbuild.recipe import Recipe, RecipeSet, Step
from hermitbuild.settings import Settings

KEY_A = "a" * 64
KEY_B = "b" * 64


def make_stage(root: Path, variant: str = "") -> Path:
    """A small install tree with files, an executable, symlinks, an empty dir and a long path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir()
    tool = root / "bin" / "x86_64-hermit-gcc"
    tool.write_bytes(b"#!/bin/sh\necho gcc" + variant.encode() + b"\n")
    tool.chmod(0o755)
    os.symlink("x86_64-hermit-gcc", root / "bin" / "x86_64-hermit-cc")
    (root / "lib").mkdir()
    (root / "lib" / "libhermit.a").write_bytes(bytes(range(256)) * 300 + variant.encode())
    private = root / "lib" / "private.key"
    private.write_text("secret" + variant)
    private.chmod(0o600)
    (root / "x86_64-hermit" / "include" / "sys").mkdir(parents=True)
    (root / "x86_64-hermit" / "include" / "sys" / "unistd.h").write_text("int hermit(void);\n" + variant)
    os.symlink("/opt/hermit/bin/x86_64-hermit-gcc", root / "x86_64-hermit" / "gcc-abs")
    (root / "share" / "empty").mkdir(parents=True)
    deep = root / "share" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 80 + ".txt")).write_text("long path\n")
    (root / "share" / "empty-file").write_bytes(b"")
    os.utime(tool, (1_500_000_000, 1_500_000_000), follow_symlinks=False)
    return root


def snapshot(root: Path) -> dict[str, Any]:
    """Everything observable about a tree: type, mode, content hash / link target, file mtime."""
    out: dict[str, Any] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode & 0o777)
            else:
                out[rel] = ("file", st.st_mode & 0o777, hashlib.sha256(p.read_bytes()).hexdigest(),
                            int(st.st_mtime))
    return out


def handmade_artifact(out: Path, manifest: Any, members: Iterable[tuple[str, str, Any]],
                      manifest_first: bool = True) -> Path:
    """Write a tar.gz with ``manifest`` and ``members`` = (name, type, data-or-linktarget)."""
    blob = json.dumps(manifest).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_manifest() -> None:
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(blob)
            tar.addfile(ti, io.BytesIO(blob))

        if manifest_first:
            add_manifest()
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tar.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o644
                tar.addfile(ti, io.BytesIO(data))
        if not manifest_first:
            add_manifest()
    out.write_bytes(gzip.compress(buf.getvalue()))
    return out


def file_entry(path: str, data: bytes, mode: int = 0o644) -> dict[str, Any]:
    return {"path": path, "type": "file", "mode": mode, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def manifest_for(key: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": 1, "key": key, "inputs": {}, "files": files, "created": "2026-01-01T00:00:00Z",
            "tool": "test"}


def recipe(name: str, depends: tuple[str, ...] = (), version: str = "1.0",
           steps: tuple[Step, ...] | None = None, **kw: Any) -> Recipe:
    if steps is None:
        steps = (Step("configure", "configure", ("--prefix={prefix}", "--target={target}")),
                 Step("build", "make", ("all",)),
                 Step("install", "make", ("install", "DESTDIR={install}")))
    return Recipe(name=name, version=version, file=Path(f"/somewhere/recipes/{name}.yaml"),
                  depends=depends, steps=steps, **kw)


def recipe_set(*recipes: Recipe) -> RecipeSet:
    return RecipeSet(recipes={r.name: r for r in recipes}, order=tuple(r.name for r in recipes))


def settings_at(root: Path, **kw: Any) -> Settings:
    kw.setdefault("build_dir", root / "build")
    kw.setdefault("cache_dir", root / "cache")
    return Settings(root=root, **kw)


# --------------------------------------------------------------------------- remote-cache tests

REMOTE_INPUTS = {"format": 1}


def key(i: int) -> str:
    """The i-th made-up cache key."""
    return f"{i:064x}"


@pytest.fixture(autouse=True)
def no_outage_memory():
    """Remotes marked unreachable are remembered per process: start and end every test clean
    (autouse in the modules that import it)."""
    from hermitbuild.cache import RemoteCache

    RemoteCache.forget_outages()
    yield
    RemoteCache.forget_outages()


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    return make_stage(tmp_path / "stage")


@pytest.fixture
def art(tmp_path: Path, stage: Path) -> Path:
    """An artifact of ``stage`` under key(1)."""
    from hermitbuild.cache import pack_artifact

    return pack_artifact(stage, key(1), REMOTE_INPUTS, tmp_path / "a.tar.zst")
