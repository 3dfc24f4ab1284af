"""Shared helpers for the patch/prepare/recipes tests (no fixtures with side effects at import)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HEADER = "What: test change\nWhy: testing\nUpstream: not applicable (test)\n\n"


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything observable about a tree: per path its kind, bytes, mode and mtime (ns)."""
    out: dict[str, tuple] = {}
    st = root.stat()
    out["."] = ("dir", None, st.st_mode, st.st_mtime_ns)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path), st.st_mode, st.st_mtime_ns)
            elif path.is_dir():
                out[rel] = ("dir", None, st.st_mode, st.st_mtime_ns)
            else:
                out[rel] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def write_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)


def make_patch(before: dict[str, str | bytes], after: dict[str, str | bytes], tmp: Path,
               out: Path, header: str = HEADER) -> Path:
    """A git-style patch (with header) turning ``before`` into ``after``, made by real git."""
    repo = tmp / f"mkpatch-{out.stem}"
    if repo.exists():
        import shutil
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write_tree(repo, before)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "before")
    for rel in before:
        if rel not in after:
            (repo / rel).unlink()
    write_tree(repo, after)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "HEAD")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + diff)
    return out


def lines(n: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {i}\n" for i in range(1, n + 1))
