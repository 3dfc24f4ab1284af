#!/usr/bin/env python3
"""Benchmark the artifact cache on a fixture "toolchain" built with the host gcc.

Prints measured ratios (no thresholds):
- build time / warm-cache restore time      (how much a cache hit saves)
- restore time / plain `tar -xzf` time      (our verification + atomic merge overhead over the floor)
- remote restore (fresh local cache, nginx on 127.0.0.1) / plain `tar -xzf`, when nginx is installed

The fixture: a generated C project (``--sources`` files of a few hundred lines each) compiled
with ``make -j`` into objects, a static library and a few executables, installed with headers
and data files into a stage tree (thousands of files).  Usage::

    python3 bench/bench_cache.py [--sources 60] [--headers 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hermitbuild.cache import (LocalCache, RemoteCache, install_from_cache, pack_artifact,  # noqa: E402
                               publish)
from hermitbuild.runner import run  # noqa: E402

KEY = "c0ffee" + "0" * 58


def write_project(src: Path, n_sources: int, n_headers: int) -> None:
    (src / "include").mkdir(parents=True)
    for h in range(n_headers):
        lines = [f"#ifndef H_{h}\n#define H_{h}\n"]
        lines += [f"int hermit_api_{h}_{i}(int a, int b); /* documented call {i} */\n" for i in range(40)]
        lines.append("#endif\n")
        (src / "include" / f"api{h:05d}.h").write_text("".join(lines))
    for s in range(n_sources):
        body = [f"#include <stdint.h>\nstatic uint64_t mix{s}(uint64_t x) {{ return x * 0x9E3779B97F4A7C15ULL ^ (x >> 31); }}\n"]
        for f in range(30):
            body.append(
                f"uint64_t f{s}_{f}(uint64_t a, uint64_t b) {{\n"
                f"  uint64_t r = a;\n  for (int i = 0; i < {f + 3}; i++) {{ r = mix{s}(r + b * i); if (r % {f + 7} == 3) r ^= b; }}\n"
                f"  switch ((int)(r & 7)) {{ case 0: r += {s}; break; case 1: r *= 3; break; case 2: r ^= a; break;\n"
                f"  case 3: r -= b; break; case 4: r = (r << 3) | (r >> 61); break; default: r += {f}; }}\n"
                f"  return r;\n}}\n")
        (src / f"m{s:04d}.c").write_text("".join(body))
    mains = []
    for t in range(4):
        (src / f"tool{t}.c").write_text(
            "#include <stdio.h>\n#include <stdint.h>\n"
            + "".join(f"uint64_t f{s}_0(uint64_t, uint64_t);\n" for s in range(n_sources))
            + f"int main(void) {{ uint64_t r = {t};\n"
            + "".join(f"  r = f{s}_0(r, {s});\n" for s in range(n_sources))
            + '  printf("%llu\\n", (unsigned long long)r); return 0; }\n')
        mains.append(f"tool{t}")
    objs = " ".join(f"m{s:04d}.o" for s in range(n_sources))
    (src / "Makefile").write_text(
        "CFLAGS ?= -O2 -g\n"
        f"OBJS = {objs}\n"
        f"TOOLS = {' '.join(mains)}\n"
        "all: libfixture.a $(TOOLS)\n"
        "libfixture.a: $(OBJS)\n\tar rcs $@ $^\n"
        "tool%: tool%.o libfixture.a\n\t$(CC) -o $@ $< libfixture.a\n"
        "%.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
        "install: all\n"
        "\tmkdir -p $(DESTDIR)/bin $(DESTDIR)/lib/objects $(DESTDIR)/include $(DESTDIR)/share/doc\n"
        "\tcp $(TOOLS) $(DESTDIR)/bin/\n"
        "\tcp libfixture.a $(DESTDIR)/lib/\n"
        "\tcp $(OBJS) $(DESTDIR)/lib/objects/\n"
        "\tcp -r include/. $(DESTDIR)/include/\n"
        "\tcp *.c $(DESTDIR)/share/doc/\n"
        "\tln -sf tool0 $(DESTDIR)/bin/fixture-cc\n")


def tree_stats(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            n += 1
            size += os.lstat(os.path.join(dirpath, f)).st_size
    return n, size


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(samples: list[float]) -> float:
    return min(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=60)
    ap.add_argument("--headers", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    jobs = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=args.workdir) as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src"
        write_project(src, args.sources, args.headers)
        stage = tmp / "stage"

        def build() -> None:
            run(["make", f"-j{jobs}", "-C", src, "all"], capture=True)
            run(["make", "-C", src, "install", f"DESTDIR={stage}"], capture=True)

        t_build = timed(build)
        files, size = tree_stats(stage)
        print(f"fixture toolchain: {files} files, {size / 1e6:.1f} MB installed; built in {t_build:.2f}s "
              f"(make -j{jobs}, host gcc)")

        artifact = tmp / "artifact.tar.gz"
        t_pack = timed(lambda: pack_artifact(stage, KEY, {"bench": True}, artifact))
        print(f"pack: {t_pack:.2f}s -> {artifact.stat().st_size / 1e6:.1f} MB artifact")

        local = LocalCache(tmp / "cache", 0)
        t_store = timed(lambda: publish(KEY, artifact, local, None))
        print(f"store in the local cache: {t_store:.2f}s")

        restores, floors = [], []
        for i in range(args.repeat):
            dest = tmp / f"restore{i}"
            restores.append(timed(lambda: install_from_cache(KEY, dest, local, None)))
            floor = tmp / f"tar{i}"
            floor.mkdir()
            floors.append(timed(lambda: run(["tar", "-xzf", artifact, "-C", floor], capture=True)))
            shutil.rmtree(dest)
            shutil.rmtree(floor)
        t_restore, t_tar = best(restores), best(floors)
        print(f"warm-cache restore (verify + atomic merge): best {t_restore:.2f}s "
              f"(median {statistics.median(restores):.2f}s of {args.repeat})")
        print(f"plain tar -xzf of the same bytes:           best {t_tar:.2f}s "
              f"(median {statistics.median(floors):.2f}s)")

        remote_line = ""
        try:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from helpers_nginx import find_nginx, start_nginx
            if find_nginx():
                with start_nginx(tmp / "nginx") as srv:
                    remote = RemoteCache(srv.url, "readwrite")
                    remote.put(KEY, local.path(KEY))
                    samples = []
                    for i in range(args.repeat):
                        fresh = LocalCache(tmp / f"fresh{i}", 0)
                        dest = tmp / f"remote{i}"
                        samples.append(timed(lambda: install_from_cache(KEY, dest, fresh, remote)))
                        shutil.rmtree(dest)
                        shutil.rmtree(fresh.root)
                    t_remote = best(samples)
                    remote_line = (f"remote restore on an empty local cache (nginx on 127.0.0.1): "
                                   f"best {t_remote:.2f}s -> {t_remote / t_tar:.2f}x the tar floor")
        except Exception as exc:  # the remote figure is optional
            remote_line = f"remote restore: not measured ({exc})"

        print()
        print(f"RATIO build / warm-cache restore:   {t_build / t_restore:6.1f}x  (cache hit is this much faster)")
        print(f"RATIO restore / plain tar -x floor: {t_restore / t_tar:6.2f}x  (overhead of verifying + merging)")
        if remote_line:
            print(remote_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
