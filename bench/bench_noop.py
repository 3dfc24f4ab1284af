#!/usr/bin/env python3
"""Benchmark the override check of an up-to-date `doit toolchain`: listing against watcher.

Every doit run must know whether an override tree changed.  Prints measured ratios (no
thresholds), all in this one run on a generated tree of GCC's shape (``--files`` files in
``--dirs`` directories; GCC 12 is 121,000 entries in 5,200 directories):

- ``find`` listing (the layer without a watcher) / asking the watcher (``treewatch``), for
  an unchanged tree: what the watcher saves on every no-op run;
- the first run with a watcher (start it, watch every directory, list) / a listing alone: what
  the watcher costs once;
- after a same-size same-mtime edit: the digest still changes (checked, not timed).

Usage::

    python3 bench/bench_noop.py [--files 121000] [--dirs 5200] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hermitbuild import treedigest, treewatch  # noqa: E402


def make_tree(root: Path, files: int, dirs: int) -> None:
    """``files`` small files spread over ``dirs`` directories, two levels deep."""
    per_top = max(1, int(dirs ** 0.5))
    paths = [root / f"d{i % per_top}" / f"s{i}" for i in range(dirs)]
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (paths[i % dirs] / f"f{i}.c").write_text(f"int v{i};\n")


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=121_000)
    parser.add_argument("--dirs", type=int, default=5_200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hbbench") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["XDG_RUNTIME_DIR"] = str(tmp / "run")  # this bench's own watchers
        tree = tmp / "gcc"
        make_tree(tree, args.files, args.dirs)
        print(f"tree: {args.files} files in {args.dirs} directories")
        time.sleep(2.1)  # out of the racy window: the listing layer keeps its fingerprint

        treewatch.configure(0)
        cache = tmp / "listing.json"
        treedigest.dir_digest(tree, cache)  # per-file digests and fingerprint written once
        listing = statistics.median(timed(lambda: treedigest.dir_digest(tree, cache)) for _ in range(args.repeat))

        wcache = tmp / "watched.json"
        treedigest.dir_digest(tree, wcache)  # warm the per-file digests alone (no watcher yet)
        treewatch.configure(600)
        first = timed(lambda: treedigest.dir_digest(tree, wcache))  # starts the watcher, lists
        watched = statistics.median(timed(lambda: treedigest.dir_digest(tree, wcache)) for _ in range(args.repeat))

        victim = tree / "d0" / "s0" / "f0.c"
        before = treedigest.dir_digest(tree, wcache)
        st = victim.stat()
        victim.write_text("int w0;\n")  # same size
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
        after = treedigest.dir_digest(tree, wcache)
        seen = after != before and after == treedigest.dir_digest(tree)

        for proc in treewatch._SPAWNED:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(f"listing (find) of an unchanged tree: {listing * 1000:.1f} ms (median of {args.repeat})")
    print(f"asking its watcher:                  {watched * 1000:.1f} ms (median of {args.repeat})")
    print(f"ratio listing / watcher:             {listing / watched:.1f}x")
    print(f"first run with a watcher (start + listing) / listing: {first / listing:.2f}x")
    print(f"same-size same-mtime edit seen: {'yes' if seen else 'NO'}")
    return 0 if seen else 1


if __name__ == "__main__":
    sys.exit(main())
