"""Text-level table edits: comments and other entries are kept; add + remove round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermitbuild.errors import SyscallError
from hermitbuild.syscalls.catalog import catalog_entry
from hermitbuild.syscalls.model import loads_table
from hermitbuild.syscalls.tablefile import add_entry_text, remove_entry_text

from helpers_syscalls import EXAMPLES, REPO

P = Path("table.yaml")


def names(text: str) -> list[str]:
    return loads_table(text, P).names()


def test_add_to_the_shipped_empty_table_and_back() -> None:
    shipped = (REPO / "syscalls" / "table.yaml").read_text()
    one = add_entry_text(shipped, catalog_entry("rename"), P)
    assert names(one) == ["rename"]
    assert one.startswith(shipped.split("syscalls: []")[0])  # every comment kept
    two = add_entry_text(one, catalog_entry("mkdir"), P)
    assert names(two) == ["rename", "mkdir"]
    assert remove_entry_text(two, "mkdir", P) == one
    assert remove_entry_text(one, "rename", P) == shipped


def test_empty_list_with_comment_and_missing_key() -> None:
    text = "syscalls: []   # nothing yet\n"
    added = add_entry_text(text, catalog_entry("chdir"), P)
    assert names(added) == ["chdir"] and "# nothing yet" in added
    assert names(add_entry_text("# only a comment\n", catalog_entry("chdir"), P)) == ["chdir"]


def test_flow_style_is_refused() -> None:
    with pytest.raises(SyscallError) as info:
        add_entry_text("syscalls: [{name: x}]\n", catalog_entry("chdir"), P)
    assert info.value.line == 1


def test_remove_keeps_comments_of_the_other_entries() -> None:
    text = EXAMPLES.read_text()
    without_my = remove_entry_text(text, "my_syscall", P)
    assert names(without_my) == ["rename"]
    assert "A brand new" not in without_my  # the comment above my_syscall went with it
    assert "A dummy implementation" in without_my  # the one above rename stayed
    without_rename = remove_entry_text(text, "rename", P)
    assert names(without_rename) == ["my_syscall"]
    assert "A brand new" in without_rename and "A dummy implementation" not in without_rename
    assert "return x + 42;" in without_rename
    with pytest.raises(SyscallError):
        remove_entry_text(text, "nope", P)


def test_quoted_name_and_body_block() -> None:
    text = ("syscalls:\n  - name: 'my_syscall'\n    returns: int\n    params: [int x]\n"
            "    kernel:\n      body: |\n        if (x < 0)\n          return -1;\n\n        return x;\n"
            "    newlib: plain\n    header: new\n  - name: rename\n    returns: int\n"
            "    params: [const char *a, const char *b]\n    kernel: {stub: 0}\n    newlib: reentrant\n"
            "    header: stdio.h\n")
    assert names(remove_entry_text(text, "my_syscall", P)) == ["rename"]
    assert names(remove_entry_text(text, "rename", P)) == ["my_syscall"]
