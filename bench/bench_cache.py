#!/usr/bin/env python3
"""Benchmark the artifact cache on a fixture "toolchain" built with the host gcc.

Prints measured ratios (no thresholds):
- build time / warm-cache restore time      (how much a cache hit saves)
- restore time / plain `tar -xf` of the same bytes (our verification + atomic merge overhead over the
  floor), for today's zstd artifacts and for the previous tar.gz format side by side
- the artifact's size against the previous format's (tar.gz, gzip level 6)
- remote restore (fresh local cache, nginx on 127.0.0.1) / the tar floor, when nginx is installed

The fixture: a generated C project (``--sources`` files of a few hundred lines each) compiled
with ``make -j`` into objects, a static library and a few executables, installed with headers
and data files into a stage tree (thousands of files).  Usage::

    python3 bench/bench_cache.py [--sources 60] [--headers 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hermitbuild.cache import (LocalCache, RemoteCache, install_from_cache, pack_artifact,  # noqa: E402
                               publish)
from hermitbuild.cache.artifact import ZSTD_LEVEL  # noqa: E402
from hermitbuild.runner import run  # noqa: E402

KEY = "c0ffee" + "0" * 58
KEY_OLD = "01d" + "0" * 61


def retagged(artifact: Path, key: str, tmp: Path) -> Path:
    """The same artifact (any compression) with ``key`` in its manifest, recompressed alike."""
    import io
    import json
    import tarfile

    raw = artifact.read_bytes()
    gz = raw[:2] == b"\x1f\x8b"
    tar_bytes = gzip.decompress(raw) if gz else zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    src = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for m in src:
            if m.name == "manifest.json":
                manifest = json.loads(src.extractfile(m).read())
                manifest["key"] = key
                blob = json.dumps(manifest).encode()
                m.size = len(blob)
                dst.addfile(m, io.BytesIO(blob))
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    out = tmp / f"retagged-{key[:6]}{'.tar.gz' if gz else '.tar.zst'}"
    out.write_bytes(gzip.compress(buf.getvalue(), compresslevel=6, mtime=0) if gz
                    else zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(buf.getvalue()))
    return out


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
    """Seconds for fn(), after the file system settled (os.sync): deleting the previous
    round's trees (ext4 with discard here) otherwise bleeds into the next measurement."""
    os.sync()
    time.sleep(0.2)
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

        artifact = tmp / "artifact.tar.zst"
        t_pack = timed(lambda: pack_artifact(stage, KEY, {"bench": True}, artifact))
        # the previous format, for comparison: the same tar, gzip level 6 (what pack wrote before)
        old = tmp / "artifact.tar.gz"
        tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(artifact.read_bytes())
        t_pack_old = timed(lambda: old.write_bytes(gzip.compress(tar_bytes, compresslevel=6, mtime=0)))
        print(f"pack (zstd level {ZSTD_LEVEL}): {t_pack:.2f}s -> {artifact.stat().st_size / 1e6:.2f} MB; "
              f"old format (tar.gz level 6): {old.stat().st_size / 1e6:.2f} MB "
              f"(gzip of the tar alone {t_pack_old:.2f}s)")

        results = {}
        trash: list[Path] = []  # trees of earlier rounds, deleted only after every measurement
        for label, art, flag, key in (("zstd", artifact, "--zstd", KEY), ("gzip (old)", old, "-z", KEY_OLD)):
            local = LocalCache(tmp / f"cache-{key[:4]}", 0)
            publish(key, retagged(art, key, tmp) if key != KEY else art, local, None)
            restores, floors = [], []
            for i in range(args.repeat):
                dest = tmp / f"restore-{key[:4]}-{i}"
                restores.append(timed(lambda: install_from_cache(key, dest, local, None)))
                floor = tmp / f"tar-{key[:4]}-{i}"
                floor.mkdir()
                floors.append(timed(lambda: run(["tar", flag, "-xf", local.path(key), "-C", floor],
                                                capture=True)))
                trash.extend([dest, floor])
            t_restore, t_tar = best(restores), best(floors)
            results[label] = (t_restore, t_tar, local)
            print(f"{label}: warm-cache restore (one pass: sha256, verify, unpack; atomic merge) best "
                  f"{t_restore:.2f}s (median {statistics.median(restores):.2f}s of {args.repeat}); "
                  f"tar {flag} -xf of the same bytes best {t_tar:.2f}s "
                  f"(median {statistics.median(floors):.2f}s)")

        remote_lines = []
        try:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from helpers_nginx import find_nginx, start_nginx
            if find_nginx():
                with start_nginx(tmp / "nginx") as srv:
                    remote = RemoteCache(srv.url, "readwrite")
                    for label, key in (("zstd", KEY), ("gzip (old)", KEY_OLD)):
                        t_tar, local = results[label][1], results[label][2]
                        remote.put(key, local.path(key))
                        samples = []
                        for i in range(args.repeat):
                            fresh = LocalCache(tmp / f"fresh-{key[:4]}-{i}", 0)
                            dest = tmp / f"remote-{key[:4]}-{i}"
                            samples.append(timed(lambda: install_from_cache(key, dest, fresh, remote)))
                            trash.extend([dest, fresh.root])
                        t_remote = best(samples)
                        remote_lines.append(
                            f"RATIO {label} remote restore (empty local cache, nginx on 127.0.0.1) / "
                            f"tar floor: {t_remote / t_tar:6.2f}x  (best {t_remote:.2f}s)")
        except Exception as exc:  # the remote figure is optional
            remote_lines.append(f"remote restore: not measured ({exc})")

        t_restore, t_tar, _ = results["zstd"]
        print()
        print(f"RATIO build / warm-cache restore:        {t_build / t_restore:6.1f}x  (cache hit is this much faster)")
        for label, (t_r, t_t, _) in results.items():
            print(f"RATIO {label} restore / tar -x floor: {t_r / t_t:6.2f}x  (overhead of verifying + merging)")
        print(f"RATIO artifact size zstd / old tar.gz:  {artifact.stat().st_size / old.stat().st_size:6.2f}x")
        for line in remote_lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
