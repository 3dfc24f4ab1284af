"""Benchmarks for fetch/unpack; prints measured ratios (no assertions).

1. safe_extract vs GNU ``tar -x`` on a generated tar.xz with many files (the price of the checks).
2. is_fetched (the doit uptodate check) vs fetch_source on an already fetched git pin
   (how cheap the cheap path is compared with opening the mirror).
3. Resuming a dropped download with Range vs starting over (bytes sent by the server).

Run: python3 bench/bench_fetch.py [--files N]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hermitbuild import fetch  # noqa: E402
from hermitbuild.recipe import Source  # noqa: E402
from hermitbuild.unpack import safe_extract  # noqa: E402
from helpers_fetch import FileServer, commit_files, make_settings  # noqa: E402


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_unpack(tmp: Path, files: int) -> None:
    archive = tmp / "many.tar.xz"
    with tarfile.open(archive, "w:xz", preset=1) as tar:
        for i in range(files):
            data = (f"/* file {i} */\n" * 20).encode()
            info = tarfile.TarInfo(f"pkg-1.0/dir{i % 50}/file{i}.c")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def ours() -> None:
        shutil.rmtree(tmp / "a", ignore_errors=True)
        safe_extract(archive, tmp / "a", 1)

    def gnu() -> None:
        shutil.rmtree(tmp / "b", ignore_errors=True)
        (tmp / "b").mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(tmp / "b"), "--strip-components=1"],
                       check=True)

    t_ours, t_gnu = timed(ours, 3), timed(gnu, 3)
    print(f"unpack {files} files: safe_extract {t_ours:.3f}s, GNU tar {t_gnu:.3f}s, "
          f"ratio {t_ours / t_gnu:.1f}x")


def bench_cheap(tmp: Path) -> None:
    up = tmp / "up"
    commit = commit_files(up, {"a.c": "int a;\n"}, "one")
    settings = make_settings(tmp / "s")
    src = Source(kind="git", url=str(up), commit=commit)
    fetch.fetch_source(src, settings)
    n = 200
    t_cheap = timed(lambda: [fetch.is_fetched(src, settings) for _ in range(n)]) / n
    mirror = fetch.git_mirror_path(str(up), settings)
    t_git = timed(lambda: [subprocess.run(["git", "-C", str(mirror), "cat-file", "-e", commit],
                                          check=True) for _ in range(20)]) / 20
    print(f"uptodate check: is_fetched {t_cheap * 1e6:.0f}us, one `git cat-file -e` {t_git * 1e6:.0f}us, "
          f"ratio {t_git / t_cheap:.0f}x")


def bench_resume(tmp: Path) -> None:
    payload = os.urandom(4 << 20)
    sha = hashlib.sha256(payload).hexdigest()
    fetch.common.BACKOFF_SECONDS = 0.01
    sent = {}
    for name, first in (("resume", "drop"), ("restart", "norange-drop")):
        with FileServer() as srv:
            srv.files["/f.tar.gz"] = payload
            srv.actions["/f.tar.gz"] = [first] + (["norange"] if first.startswith("norange") else [])
            settings = make_settings(tmp / name)
            fetch.fetch_source(Source(kind="tarball", url=srv.url("/f.tar.gz"), sha256=sha), settings)
            sent[name] = srv.bytes_sent
    print(f"dropped 4 MiB download: bytes sent with Range resume {sent['resume']}, "
          f"starting over {sent['restart']}, ratio {sent['restart'] / sent['resume']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_unpack(tmp, args.files)
        bench_cheap(tmp)
        bench_resume(tmp)


if __name__ == "__main__":
    main()
