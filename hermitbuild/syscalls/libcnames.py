"""The functions newlib's C library and math library already define (a syscall must not).

Contract:
- :func:`scan` reads a newlib source tree (``newlib/libc`` and ``newlib/libm``; of their
  ``machine`` directories only ``x86_64``; not the syscall layer :data:`STUB_LAYER`: the
  HermitCore port's own files in ``libc/sys`` and the wrappers around the OS stubs in
  ``libc/syscalls`` and ``libc/reent``, whose names a syscall may take) and returns ``{function name: relative file}`` for every
  public (not ``_``-prefixed, not ``static``) function defined there, in newlib's three
  styles: ``_DEFUN(name, ...)``, the GNU style (the name at column 0 under its type) and
  one-line heads.  Pure file reads.
- :func:`bundled` is the same map for the pinned newlib (02d2b87), shipped in
  ``data/newlib-functions.txt`` and made by ``python -m hermitbuild.syscalls.libcnames
  TREE`` (the fetched tree itself is not shipped).
- :func:`defined` is the map of the given tree (the command line passes an overridden
  newlib's prepared tree), else the bundled one.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Mapping

DATA = Path(__file__).resolve().parent / "data" / "newlib-functions.txt"

# the syscall layer: the port's own files, and newlib's wrappers around the OS stubs it calls
# (open() -> _open_r() -> _open()); a syscall of one of these names replaces a stub, as documented
STUB_LAYER = frozenset({("libc", "sys"), ("libc", "syscalls"), ("libc", "reent")})

_KEYWORDS = frozenset({"if", "while", "for", "switch", "return", "sizeof", "do", "else", "case",
                       "defined", "__attribute__", "asm", "__asm__", "typeof", "__typeof__"})
_DEFUN = re.compile(r"\b_DEFUN(?:_VOID)?\s*\(\s*([A-Za-z]\w*)")
_GNU_HEAD = re.compile(r"^([A-Za-z]\w*)\s*\(([^;]*)$")
_ONE_LINE = re.compile(r"^\s*(?!static\b|return\b|else\b|case\b|goto\b|do\b)"
                       r"(?:[A-Za-z_]\w*[\s*]+)+?\**([A-Za-z]\w*)\s*\(([^;]*)\)\s*$")


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _names_in(text: str) -> set[str]:
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # doc blocks hold prose
    names = set(_DEFUN.findall(text))
    previous = ""
    for line in text.splitlines():
        if line[:1].isalpha():
            m = _GNU_HEAD.match(line)
            if m and previous and not previous.rstrip().endswith((";", ",", "\\", "{", "}", ")")) \
                    and "static" not in previous.split() and not previous.lstrip().startswith("#"):
                names.add(m.group(1))

        m = _ONE_LINE.match(line)
        if m and "=" not in line.split("(", 1)[0]:
            names.add(m.group(1))
        if line.strip():
            previous = line
    return {n for n in names if n not in _KEYWORDS and not n.isupper()}


def scan(tree: Path) -> dict[str, str]:
    """``{name: file}`` of the public functions newlib's libc and libm define (see the contract)."""
    base = tree / "newlib" if (tree / "newlib" / "libc").is_dir() else tree
    found: dict[str, str] = {}
    for lib in ("libc", "libm"):
        root = base / lib
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(base)
            if rel_dir.parts[:2] in STUB_LAYER:
                dirnames[:] = []
                continue
            if rel_dir.parts[1:2] == ("machine",) and len(rel_dir.parts) == 2:
                dirnames[:] = [d for d in dirnames if d == "x86_64"]
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".c"):
                    continue
                try:
                    text = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                for fn in _names_in(text):
                    found.setdefault(fn, str(rel_dir / name))
    return found


@functools.lru_cache(maxsize=1)
def bundled() -> Mapping[str, str]:
    out: dict[str, str] = {}
    try:
        lines = DATA.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        if line and not line.startswith("#"):
            name, _, where = line.partition(" ")
            out[name] = where
    return out


def defined(newlib_tree: Path | None) -> Mapping[str, str]:
    """The prepared tree's functions when it exists, else the bundled list of the pinned newlib."""
    if newlib_tree is not None and (newlib_tree / "newlib" / "libc").is_dir():
        return scan(newlib_tree)
    return bundled()


def main(argv: list[str]) -> int:  # pragma: no cover - a maintainer's tool
    if len(argv) != 1:
        print("usage: python -m hermitbuild.syscalls.libcnames NEWLIB_TREE > data/newlib-functions.txt",
              file=sys.stderr)
        return 2
    found = scan(Path(argv[0]))
    print("# public functions of newlib's libc and libm (made by hermitbuild.syscalls.libcnames from the")
    print("# pinned newlib tree); a syscall with one of these names is refused unless the catalog has it")
    for name in sorted(found):
        print(f"{name} {found[name]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
