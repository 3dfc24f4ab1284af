"""``doit cache stats|list|prune|push|verify``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging

from ..errors import ArtifactError, CacheError
from ..settings import Settings, format_size

from .artifact import read_manifest
from .keys import check_key, parse_size
from .store import open_caches

logger = logging.getLogger(__name__)


# --- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doit cache", description="Inspect and maintain the artifact cache.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="entries and size of the local cache (and the remote's settings)")
    sub.add_parser("list", help="every local entry: key, recipe, version, size, last use")
    pr = sub.add_parser("prune", help="delete least recently used entries down to the size bound")
    pr.add_argument("--max-size", help="bound to prune to (default: cache_max_size), e.g. 5G")
    pu = sub.add_parser("push", help="upload local entries the remote does not have")
    pu.add_argument("keys", nargs="*", help="keys to push (default: all local entries)")
    ve = sub.add_parser("verify", help="deep-check every local entry; bad ones are deleted")
    ve.add_argument("--keep", action="store_true", help="report bad entries but do not delete them")
    return p


def cache_cli(argv: list[str], settings: Settings) -> int:
    """``doit cache stats|list|prune|push|verify``; prints to stdout, returns an exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    local, remote = open_caches(settings)
    if args.command == "stats":
        st = local.stats()
        print(f"local cache:  {st['root']}")
        print(f"entries:      {st['entries']}")
        print(f"size:         {format_size(st['size'])} of {format_size(st['max_size'])} "
              f"({settings.cache_max_size})")
        print(f"remote cache: {settings.remote_cache or '-'} (mode {settings.remote_cache_mode}"
              + (", token set" if settings.remote_cache_token else "") + ")")
        return 0
    if args.command == "list":
        entries = local.list()
        for e in entries:
            try:
                m = read_manifest(e.path)
                recipe = m.get("inputs", {}).get("recipe", {})
                what = f"{recipe.get('name', '?')} {recipe.get('version', '')}".strip()
            except ArtifactError:
                what = "(unreadable)"
            used = _dt.datetime.fromtimestamp(e.last_used, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
            print(f"{e.key}  {format_size(e.size):>8}  {used}  {what}")
        print(f"{len(entries)} entries, {format_size(sum(e.size for e in entries))}")
        return 0
    if args.command == "prune":
        bound = parse_size(args.max_size, "--max-size") if args.max_size is not None else None
        removed = local.prune(bound)
        for key in removed:
            print(f"removed {key}")
        shown = bound if bound is not None else local.max_size
        print(f"pruned {len(removed)} entries; {format_size(local.total_size())} left "
              f"(bound {format_size(shown) if shown or bound is not None else 'none'})")
        return 0
    if args.command == "push":
        if remote is None or remote.mode != "readwrite":
            raise CacheError("cannot push: the remote cache is not writable",
                             f"remote_cache_mode is {settings.remote_cache_mode!r}",
                             "set HERMITBUILD_REMOTE_CACHE=<url> and HERMITBUILD_REMOTE_CACHE_MODE="
                             "readwrite (and the token variable if the server needs one)")
        keys = [check_key(k) for k in args.keys] or [e.key for e in local.list()]
        failed = pushed = skipped = 0
        for key in keys:
            path = local.get(key)
            if path is None:
                print(f"{key}  not in the local cache")
                failed += 1
                continue
            if remote.has(key):
                print(f"{key}  already on the remote")
                skipped += 1
                continue
            if remote.put(key, path):
                print(f"{key}  pushed")
                pushed += 1
            else:
                print(f"{key}  FAILED (see the warning above)")
                failed += 1
        print(f"pushed {pushed}, already there {skipped}, failed {failed}")
        return 1 if failed else 0
    # verify
    entries = local.list()
    bad = local.verify(remove=not args.keep)
    for key, problem in bad:
        print(f"{key}  BAD: {problem}" + ("" if args.keep else " (deleted)"))
    print(f"verified {len(entries)} entries: {len(entries) - len(bad)} good, {len(bad)} bad")
    return 1 if bad else 0
