"""Text-level edits of the table file that keep comments and the other entries.

Contract: entries are YAML blocks starting with a ``- name: NAME`` line under
``syscalls:``.  :func:`add_entry_text` appends the block of a new entry (turning
``syscalls: []`` into a block list); :func:`remove_entry_text` cuts the block of
one entry (with the comment lines directly above it) and turns an emptied list
back into ``syscalls: []``.  Both return the new text only; the caller re-parses
and validates it before anything is written.  Text that cannot be edited this
way raises :class:`~hermitbuild.errors.SyscallError` telling to edit by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SyscallError
from .model import Entry, entry_to_yaml

_TOP_RE = re.compile(r"^syscalls:[ \t]*(?P<rest>.*)$", re.M)
_ITEM_RE = re.compile(r"^(?P<indent>[ \t]*)-[ \t]+name:[ \t]*(?P<q>['\"]?)(?P<name>[A-Za-z0-9_]+)(?P=q)[ \t]*(#.*)?$")


def add_entry_text(text: str, entry: Entry, path: Path | str) -> str:
    """The table text with ``entry``'s block appended."""
    block = entry_to_yaml(entry)
    m = _TOP_RE.search(text)
    if not m:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + "syscalls:\n" + block
    rest = m.group("rest").split("#", 1)[0].strip()
    if rest == "[]":
        comment = m.group("rest")[m.group("rest").find("#"):] if "#" in m.group("rest") else ""
        text = text[:m.start()] + "syscalls:" + (" " + comment if comment else "") + text[m.end():]
        return _append(text, block)
    if rest:
        raise SyscallError("`syscalls:` is written in flow style, which `add` cannot extend",
                           "write the entries as a block list (`- name: ...` lines) or add the entry by "
                           "hand", file=str(path), line=text[:m.start()].count("\n") + 1, field="syscalls")
    return _append(text, block)


def _append(text: str, block: str) -> str:
    body = text.rstrip("\n") + "\n"
    return body + block


def remove_entry_text(text: str, name: str, path: Path | str) -> str:
    """The table text without the block of entry ``name``."""
    lines = text.split("\n")
    start = None
    indent = ""
    for i, line in enumerate(lines):
        m = _ITEM_RE.match(line)
        if m and m.group("name") == name:
            start, indent = i, m.group("indent")
            break
    if start is None:
        raise SyscallError(f"no block `- name: {name}` in the table",
                           "check the name with `doit syscall list`, or edit the table by hand",
                           file=str(path))
    end = start + 1
    while end < len(lines):
        line = lines[end]
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            cur = len(line) - len(line.lstrip())
            if cur <= len(indent):
                break
        elif stripped.startswith("#"):
            # a comment at the item's indent followed by the next item belongs to that item
            j = end
            while j < len(lines) and lines[j].strip().startswith("#"):
                j += 1
            if j < len(lines) and _ITEM_RE.match(lines[j]) and \
                    len(line) - len(line.lstrip()) <= len(indent):
                break
        end += 1
    # trailing blank lines of the block stay with the block
    first = start
    while first > 0 and lines[first - 1].strip().startswith("#") and \
            len(lines[first - 1]) - len(lines[first - 1].lstrip()) >= len(indent):
        first -= 1
    new_lines = lines[:first] + lines[end:]
    new_text = "\n".join(new_lines)
    if text.endswith("\n") and not new_text.endswith("\n"):
        new_text += "\n"
    if not any(_ITEM_RE.match(ln) for ln in new_lines) and not re.search(r"^[ \t]*-", new_text, re.M):
        new_text = _TOP_RE.sub(lambda m: "syscalls: []" + (
            "  " + m.group("rest") if m.group("rest").startswith("#") else ""), new_text, count=1)
        new_text = new_text.rstrip("\n") + "\n"
    return new_text

