"""Ordered, all-or-nothing application of a recipe's patch series (patch-ng).

Contract:
- :func:`apply_series` applies ``patches`` (``PatchSpec``s) to ``tree`` in
  numeric order.  It is all or nothing: every patch is parsed first, then the
  whole series is applied to a *scratch copy* of the files it touches (outside
  the tree).  Only when every hunk of every patch applied is the result copied
  back into the tree.  On any failure the tree is byte-identical and
  mtime-identical to before (nothing in it was touched) and
  :class:`~hermitbuild.errors.PatchError` names the patch file, the target
  file and the (per-file, 1-based) hunk number.
- Patches may modify, create, delete and rename files (unified diffs, plain or
  git style).  ``PatchSpec.strip`` works like ``patch -pN``.
- A patch naming a path outside the tree (absolute, ``..`` escaping, or a path
  through a symlink that leaves the tree) is refused before anything happens.
- Hunks must match exactly (no fuzz); like GNU patch a hunk may be found at an
  offset from its stated line (logged).  A hunk whose change is already present
  is an error, not a silent success (patch-ng would accept it).

patch-ng is used to parse the patches and to write patched files
(``PatchSet.write_hunks``); its quirks are handled here: it reports problems
through the ``patch_ng`` logger instead of raising (those records are captured
and turned into errors), it silently rewrites ``../`` and absolute file names
(we read the raw names instead, see :func:`_raw_patchset`), it overwrites
existing files on "create" and deletes files without checking their content,
it treats an already-applied patch as success, and it strips git ``a/``/``b/``
prefixes on its own.  None of that reaches the tree.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence


from .fsutil import is_inside
from .errors import PatchError
from .recipe import PatchSpec

logger = logging.getLogger(__name__)

_DEV_NULL = "/dev/null"


class _Capture(logging.Handler):
    """Collects patch-ng's log records (it logs failures instead of raising)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


class _captured:
    """Context manager: route the ``patch_ng`` logger into a :class:`_Capture`."""

    def __enter__(self) -> _Capture:
        self.log = logging.getLogger("patch_ng")
        self.capture = _Capture()
        self.saved = (self.log.level, self.log.propagate)
        self.log.addHandler(self.capture)
        self.log.setLevel(logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.INFO)
        self.log.propagate = False
        return self.capture

    def __exit__(self, *exc: object) -> None:
        self.log.removeHandler(self.capture)
        self.log.setLevel(self.saved[0])
        self.log.propagate = self.saved[1]
        for rec in self.capture.records:
            logger.debug("patch_ng: %s", rec.getMessage())


def _patch_ng() -> Any:
    """patch-ng, imported when a patch is first parsed or written: it imports urllib.request
    and email (35-60 ms), which a doit command that applies no patch does not need."""
    import patch_ng
    return patch_ng


@functools.cache
def _raw_patchset() -> type:
    class _RawPatchSet(_patch_ng().PatchSet):  # type: ignore[misc, name-defined]
        """A PatchSet that keeps the file names exactly as written in the patch.

        patch-ng's own normalisation strips ``a/``/``b/``, removes leading ``../``
        and turns absolute names into relative ones, with only a log warning; we
        need the raw names to apply ``-p`` ourselves and to refuse paths that
        leave the tree.
        """

        def _normalize_filenames(self) -> None:  # noqa: D401 - deliberately a no-op
            return None

    return _RawPatchSet


@dataclass
class _Change:
    """One file-level change of a patch, with tree-relative paths."""

    kind: str  # modify | create | delete | rename
    source: str  # relative path (create: same as target)
    target: str
    hunks: list  # patch_ng.Hunk objects ([] for header-only git changes)
    mode: int | None  # new file mode from a git header, if any
    index: int  # position among patch-ng's items (0: from the git header scan)
    no_newline: bool = False  # the new file ends without a newline


@dataclass
class _Parsed:
    spec: PatchSpec
    changes: list[_Change] = field(default_factory=list)


def _fail(spec: PatchSpec, recipe: str, why: str, fix: str, target: str = "",
          hunk: int | None = None) -> PatchError:
    return PatchError(why, fix, patch=spec.path, target=target, hunk=hunk, recipe=recipe)


def _clean_name(raw: bytes) -> str:
    name = raw.decode("utf-8", "surrogateescape").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return name


def _strip(name: str, strip: int, spec: PatchSpec, recipe: str) -> str:
    """Apply ``-p strip`` and make sure the result stays inside the tree."""
    if name.startswith("/") and strip == 0:
        raise _fail(spec, recipe, f"the patch names the absolute path {name}",
                    "patches may only touch files inside the source tree; regenerate it with "
                    "relative a/ b/ paths", target=name)
    parts = [p for p in name.split("/") if p]
    if len(parts) <= strip:
        raise _fail(spec, recipe,
                    f"file name {name!r} has too few components for -p{strip} (patch_strip)",
                    "fix the recipe's patch_strip or regenerate the patch with a/ b/ prefixes",
                    target=name)
    rel = posixpath.normpath("/".join(parts[strip:]))
    if rel in (".", "") or rel == ".." or rel.startswith("../") or rel.startswith("/"):
        raise _fail(spec, recipe, f"the patch touches {name!r}, which is outside the tree",
                    "patches may only touch files inside the source tree; remove the ../ "
                    "components from the patch's file names", target=name)
    return rel


def _parse(spec: PatchSpec, recipe: str) -> _Parsed:
    try:
        data = spec.path.read_bytes()
    except OSError as exc:
        raise _fail(spec, recipe, f"cannot read the patch: {exc.strerror}",
                    "check the file exists and is readable") from None
    pset = _raw_patchset()()
    with _captured() as cap:
        ok = pset.parse(io.BytesIO(data))
    if not ok or pset.errors:
        problems = cap.problems()
        if not pset.items and not any("hunk" in m for m in problems):
            raise _fail(spec, recipe, "the patch contains no file changes (no ---/+++ lines)",
                        "regenerate it with `git format-patch` or `diff -u`")
        hunk = None
        for msg in problems:
            if "hunk no." in msg:
                try:
                    hunk = int(msg.split("hunk no.")[1].split()[0])
                except (ValueError, IndexError):
                    pass
                break
        raise _fail(spec, recipe, "patch-ng cannot parse the patch: " + ("; ".join(problems) or
                                                                          "malformed unified diff"),
                    "regenerate the patch with `git format-patch` or `diff -u` (hunk line counts "
                    "must match the hunk bodies)", hunk=hunk)
    if not pset.items:
        raise _fail(spec, recipe, "the patch contains no file changes (no ---/+++ lines)",
                    "regenerate it with `git format-patch` or `diff -u`")
    parsed = _Parsed(spec)
    endings = iter(_new_ends_without_newline(data))
    for index, item in enumerate(pset.items, 1):
        if item.mode == "rename" and not item.hunks:
            continue  # taken from the git header scan below (names without a/ b/ there)
        src_raw = _clean_name(item.source or b"")
        tgt_raw = _clean_name(item.target or b"")
        creating = src_raw == _DEV_NULL
        deleting = tgt_raw == _DEV_NULL
        if creating and deleting:
            raise _fail(spec, recipe, "a file change goes from /dev/null to /dev/null",
                        "regenerate the patch")
        src = None if creating else _strip(src_raw, spec.strip, spec, recipe)
        tgt = None if deleting else _strip(tgt_raw, spec.strip, spec, recipe)
        for hno, hunk in enumerate(item.hunks, 1):
            if getattr(hunk, "invalid", False):
                raise _fail(spec, recipe, "the hunk is malformed", "regenerate the patch",
                            target=tgt or src or "", hunk=hno)
        if creating:
            kind, src = "create", tgt
        elif deleting:
            kind, tgt = "delete", src
        elif src != tgt:
            kind = "rename"  # a git rename with changes: patch-ng gives it as a plain a/x -> b/y
        else:
            kind = "modify"
        assert src is not None and tgt is not None
        parsed.changes.append(_Change(kind, src, tgt, list(item.hunks), item.filemode, index,
                                      no_newline=next(endings, False)))
    for block in _header_only_blocks(data):
        if block.binary:
            raise _fail(spec, recipe, f"binary change of {block.new or block.old} (GIT binary patch)",
                        "binary patches are not supported; ship such files another way",
                        target=(block.new or block.old).decode("utf-8", "replace"))
        old = _strip(_clean_name(block.old), spec.strip, spec, recipe)
        new = _strip(_clean_name(block.new), spec.strip, spec, recipe)
        if block.created:
            parsed.changes.append(_Change("create", new, new, [], block.mode, 0))
        elif block.deleted:
            parsed.changes.append(_Change("delete", old, old, [], None, 0))
        elif old != new:
            parsed.changes.append(_Change("rename", old, new, [], block.mode, 0))
        elif block.mode is not None:
            parsed.changes.append(_Change("modify", old, old, [], block.mode, 0))
    if not parsed.changes:
        raise _fail(spec, recipe, "the patch contains no file changes",
                    "regenerate it with `git format-patch` or `diff -u`")
    return parsed


_HUNK_HEAD = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def _new_ends_without_newline(data: bytes) -> list[bool]:
    """Per ---/+++ file section: does the new file end without a newline?

    patch-ng drops a "\\ No newline at end of file" marker that follows the last
    added line, so we read it from the raw text (walking hunk bodies by their
    line counts, so a body line starting with "+++" is not taken for a header).
    """
    out: list[bool] = []
    lines = data.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ "):
            i += 2
            flag = False
            while i < len(lines):
                m = _HUNK_HEAD.match(lines[i])
                if not m:
                    break
                src_left = int(m.group(1)) if m.group(1) is not None else 1
                tgt_left = int(m.group(2)) if m.group(2) is not None else 1
                i += 1
                last = b""
                while i < len(lines) and (src_left > 0 or tgt_left > 0 or lines[i].startswith(b"\\")):
                    line = lines[i]
                    if line.startswith(b"\\"):
                        if last in (b"+", b" "):
                            flag = True
                    else:
                        kind = line[:1] or b" "
                        if kind in (b" ", b"-"):
                            src_left -= 1
                        if kind in (b" ", b"+"):
                            tgt_left -= 1
                        last = kind
                        flag = False
                    i += 1
            out.append(flag)
            continue
        i += 1
    return out


@dataclass
class _GitBlock:
    old: bytes
    new: bytes
    created: bool = False
    deleted: bool = False
    mode: int | None = None
    binary: bool = False
    content: bool = False


_GIT_DIFF = re.compile(rb"^diff --git (\S+) (\S+)\s*$")


def _header_only_blocks(data: bytes) -> list[_GitBlock]:
    """Git blocks without a ---/+++ part, which patch-ng does not report as changes:
    empty new/deleted files, pure renames and mode changes (and binary patches, refused)."""
    blocks: list[_GitBlock] = []
    cur: _GitBlock | None = None
    for line in data.splitlines():
        m = _GIT_DIFF.match(line)
        if m:
            cur = _GitBlock(m.group(1), m.group(2))
            blocks.append(cur)
            continue
        if cur is None or cur.content:
            continue
        if line.startswith((b"--- ", b"+++ ", b"@@ ")):
            cur.content = True
        elif line.startswith((b"GIT binary patch", b"Binary files ")):
            cur.binary = True
        elif line.startswith(b"new file mode "):
            cur.created = True
            cur.mode = int(line.split()[-1], 8)
        elif line.startswith(b"deleted file mode "):
            cur.deleted = True
        elif line.startswith(b"new mode "):
            cur.mode = int(line.split()[-1], 8)
    return [b for b in blocks if b.binary or not b.content]


# ---------------------------------------------------------------------- hunk matching

def _lines(hunk: object, marks: bytes) -> list[bytes]:
    return [line[1:].rstrip(b"\r\n") for line in hunk.text  # type: ignore[attr-defined]
            if line[:1] and line[:1] in marks and not line.startswith(b"\\")]


def _locate(content: list[bytes], hunks: Sequence[object]) -> tuple[list[int], int | None, str]:
    """Find where each hunk applies.

    Returns (start line per hunk (1-based), failing hunk number or None, reason).
    A hunk is searched at its stated line first, then at growing offsets, never
    before the end of the previous hunk (like GNU patch, without fuzz).
    """
    starts: list[int] = []
    floor = 0  # 0-based index of the first line the next hunk may use
    n = len(content)
    for hno, hunk in enumerate(hunks, 1):
        find = _lines(hunk, b" -")
        stated = max(int(hunk.startsrc or 0) - 1, 0)  # type: ignore[attr-defined]
        if not find:  # pure insertion without context (diff -U0, or into an empty file)
            after = int(hunk.startsrc or 0)  # type: ignore[attr-defined]  # insert after this line
            if after < floor or after > n:
                return starts, hno, f"it inserts after line {after}, outside the file ({n} lines)"
            starts.append(after + 1)
            floor = after
            continue
        found = None
        for delta in _offsets(stated, floor, n - len(find)):
            if content[delta:delta + len(find)] == find:
                found = delta
                break
        if found is None:
            actual = content[stated:stated + len(find)]
            mismatch = next((i for i, (a, b) in enumerate(zip(find, actual)) if a != b),
                            min(len(find), len(actual)))
            expected = find[mismatch].decode("utf-8", "replace") if mismatch < len(find) else ""
            got = (actual[mismatch].decode("utf-8", "replace") if mismatch < len(actual)
                   else "<end of file>")
            return starts, hno, (f"the context/removed lines are not in the file (at line "
                                 f"{stated + mismatch + 1} expected {expected!r}, found {got!r}; "
                                 "searched the whole file for an offset)")
        if found != stated:
            logger.info("hunk #%d applies at offset %+d", hno, found - stated)
        starts.append(found + 1)
        floor = found + len(find)
    return starts, None, ""


def _offsets(stated: int, floor: int, last: int) -> Iterator[int]:
    """Candidate 0-based positions: stated first, then alternating outwards."""
    if last < floor:
        return
    stated = min(max(stated, floor), last)
    yield stated
    step = 1
    while stated - step >= floor or stated + step <= last:
        if stated + step <= last:
            yield stated + step
        if stated - step >= floor:
            yield stated - step
        step += 1


def _already_applied(content: list[bytes], hunks: Sequence[object]) -> bool:
    text = content
    for hunk in hunks:
        want = _lines(hunk, b" +")
        if not want:
            return False
        if not any(text[i:i + len(want)] == want for i in range(0, len(text) - len(want) + 1)):
            return False
    return True


def _read_lines(path: Path) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in path.read_bytes().splitlines(keepends=True)]


def _new_file_bytes(hunks: Sequence[object], no_newline: bool = False) -> bytes:
    """Content of a created file (patch-ng's own version keeps only the first hunk and
    ignores "\\ No newline at end of file")."""
    out: list[bytes] = []
    for hunk in hunks:
        for line in hunk.text:  # type: ignore[attr-defined]
            if line.startswith(b"+"):
                body = line[1:]
                if not body.endswith(b"\n"):
                    body += b"\n"
                out.append(body)
    data = b"".join(out)
    if no_newline and data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    return data


# ---------------------------------------------------------------------- application

def _apply_one(parsed: _Parsed, work: Path, recipe: str) -> None:
    """Apply one patch to the scratch copy ``work`` (raises PatchError)."""
    spec = parsed.spec
    for ch in parsed.changes:
        hunks = ch.hunks
        src = work / ch.source
        tgt = work / ch.target
        if ch.kind == "create":
            if tgt.exists() or tgt.is_symlink():
                raise _fail(spec, recipe, f"the patch creates {ch.target}, which already exists",
                            "the file may come from the source already (drop or refresh the "
                            "patch) or an earlier patch creates it too", target=ch.target,
                            hunk=1 if hunks else None)
            tgt.parent.mkdir(parents=True, exist_ok=True)
            tgt.write_bytes(_new_file_bytes(hunks, ch.no_newline))
            mode = ch.mode
            tgt.chmod((mode & 0o777) if mode and stat.S_ISREG(mode) else 0o644)
            continue
        if not src.is_file():
            raise _fail(spec, recipe, f"the file to patch, {ch.source}, does not exist in the tree",
                        "check the patch is for this source version and the recipe's patch_strip "
                        f"(-p{spec.strip})", target=ch.source, hunk=1 if hunks else None)
        if ch.kind == "delete" and not hunks and src.stat().st_size:
            raise _fail(spec, recipe, f"the patch deletes the empty file {ch.source}, but it is not "
                        "empty", "refresh the patch", target=ch.source)
        if hunks:
            content = _read_lines(src)
            starts, bad, reason = _locate(content, hunks)
            if bad is not None:
                if _already_applied(content, hunks):
                    reason = ("the change is already present in the file (was the patch merged "
                              "upstream, or is it listed twice?)")
                    fix = "drop the patch from the series, or refresh it"
                else:
                    fix = ("refresh the patch against the pinned source (e.g. `git am`/`quilt "
                           "refresh`), or check an earlier patch of the series did not change "
                           "this spot")
                raise _fail(spec, recipe, f"hunk #{bad} does not apply: {reason}", fix,
                            target=ch.source, hunk=bad)
            if ch.kind == "delete":
                adds = [h for h in hunks if _lines(h, b"+")]
                removed = sum(len(_lines(h, b"-")) for h in hunks)
                if adds or removed != len(content):
                    raise _fail(spec, recipe,
                                f"the patch deletes {ch.source} but the file has other content "
                                "than the patch removes", "refresh the patch", target=ch.source,
                                hunk=len(hunks))
            else:
                for hunk, start in zip(hunks, starts):
                    hunk.startsrc = start
                mode = src.stat().st_mode
                tmp = src.with_name(src.name + ".hb-new")
                writer = _patch_ng().PatchSet()
                with _captured() as cap:
                    ok = writer.write_hunks(str(src), str(tmp), hunks)
                if not ok or cap.problems():
                    tmp.unlink(missing_ok=True)
                    raise _fail(spec, recipe, "patch-ng could not write the patched file: "
                                + "; ".join(cap.problems()), "refresh the patch", target=ch.source)
                data = tmp.read_bytes()
                if ch.no_newline and data.endswith(b"\n"):
                    tmp.write_bytes(data[:-2] if data.endswith(b"\r\n") else data[:-1])
                os.replace(tmp, src)
                os.chmod(src, stat.S_IMODE(mode))
        if ch.kind == "delete":
            src.unlink()
            continue
        if ch.kind == "rename":
            if tgt.exists() or tgt.is_symlink():
                raise _fail(spec, recipe, f"the patch renames {ch.source} to {ch.target}, which "
                            "already exists", "refresh the patch", target=ch.target)
            tgt.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, tgt)
        if ch.mode is not None and stat.S_ISREG(ch.mode):
            tgt.chmod(ch.mode & 0o777)


def _inside(tree_real: str, path: Path) -> bool:
    return is_inside(os.path.realpath(path), tree_real)


def apply_series(tree: Path, patches: Sequence[PatchSpec], recipe: str = "") -> None:
    """Apply ``patches`` to ``tree`` in numeric order, all or nothing (see module docstring)."""
    tree = Path(tree)
    if not patches:
        return
    if not tree.is_dir():
        raise PatchError(f"the tree {tree} does not exist", "prepare the source tree first",
                         patch=patches[0].path, recipe=recipe)
    ordered = sorted(patches, key=lambda p: p.number)
    parsed = [_parse(spec, recipe) for spec in ordered]

    tree_real = os.path.realpath(tree)
    affected: dict[str, None] = {}
    for p in parsed:
        for ch in p.changes:
            for rel in {ch.source, ch.target}:
                if not _inside(tree_real, tree / rel):
                    raise _fail(p.spec, recipe, f"the patch touches {rel}, which resolves outside "
                                "the tree (through a symlink)",
                                "patches may only touch files inside the source tree", target=rel)
                affected[rel] = None
                for parent in Path(rel).parents:
                    if str(parent) != "." and (tree / parent).exists() and \
                            not (tree / parent).is_dir():
                        raise _fail(p.spec, recipe, f"the patch needs {parent} to be a directory, "
                                    "but it is a file in the tree",
                                    "check the patch is for this source version", target=rel)

    scratch = Path(tempfile.mkdtemp(prefix="hermitbuild-patch-"))
    try:
        work = scratch / "work"
        orig = scratch / "orig"
        existed: dict[str, bool] = {}
        for rel in affected:
            src = tree / rel
            existed[rel] = src.is_file() and not src.is_symlink()
            if existed[rel]:
                for base in (work, orig):
                    dst = base / rel
                    try:
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, dst)
                    except OSError as exc:
                        raise _fail(parsed[0].spec, recipe, f"cannot read {rel}: {exc.strerror}",
                                    "check the file's permissions (and the free space in the "
                                    "temp dir)", target=rel) from None
            elif src.exists() or src.is_symlink():
                raise _fail(parsed[0].spec, recipe, f"{rel} is not a regular file in the tree",
                            "patches can only change regular files", target=rel)
        for p in parsed:
            logger.info("applying %s%s", p.spec.name, f" to {recipe}" if recipe else "")
            try:
                _apply_one(p, work, recipe)
            except OSError as exc:  # e.g. a file where the patch needs a directory
                target = os.path.relpath(exc.filename, work) if exc.filename else ""
                raise _fail(p.spec, recipe, f"the patch cannot be applied: {exc.strerror}",
                            "check the patch's file names against the tree (a path may name a "
                            "file where a directory is needed)", target=target) from None
        _commit(tree, work, orig, existed, recipe, parsed[-1].spec)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _same(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if sa.st_size != sb.st_size or stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
        return False
    return a.read_bytes() == b.read_bytes()


def _commit(tree: Path, work: Path, orig: Path, existed: dict[str, bool], recipe: str,
            last: PatchSpec) -> None:
    """Copy the patched scratch files into the tree; roll back if that fails midway."""
    done: list[tuple[str, str]] = []  # (rel, "write"|"delete")
    made_dirs: list[Path] = []
    dir_times: dict[Path, tuple[int, int]] = {}

    def remember_dir(d: Path) -> None:
        if d not in dir_times and d.is_dir():
            st = d.stat()
            dir_times[d] = (st.st_atime_ns, st.st_mtime_ns)

    try:
        for rel, was in existed.items():
            new = work / rel
            dst = tree / rel
            now = new.is_file()
            if was and now and _same(new, orig / rel):
                continue
            if not was and not now:
                continue
            parent = dst.parent
            missing = []
            while not parent.exists():
                missing.append(parent)
                parent = parent.parent
            remember_dir(parent)
            for d in reversed(missing):
                d.mkdir()
                made_dirs.append(d)
            if now:
                remember_dir(dst.parent)
                fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".hb-tmp", dir=dst.parent)
                try:
                    with os.fdopen(fd, "wb") as out, open(new, "rb") as inp:
                        shutil.copyfileobj(inp, out)
                    os.chmod(tmp, stat.S_IMODE(new.stat().st_mode))
                    os.replace(tmp, dst)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                done.append((rel, "write"))
            else:
                remember_dir(dst.parent)
                dst.unlink()
                done.append((rel, "delete"))
    except OSError as exc:
        for rel, _ in reversed(done):
            dst = tree / rel
            if existed[rel]:
                tmp = dst.with_name(f".{dst.name}.hb-restore")
                shutil.copy2(orig / rel, tmp)
                os.replace(tmp, dst)
            else:
                dst.unlink(missing_ok=True)
        for d in reversed(made_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        for d, (atime, mtime) in dir_times.items():
            if d.exists():
                os.utime(d, ns=(atime, mtime))
        raise PatchError(f"writing the patched files into the tree failed: {exc}",
                         "free disk space / fix permissions and re-run; the tree was restored",
                         patch=last.path, target=str(getattr(exc, "filename", "") or ""),
                         recipe=recipe) from None
