"""The table model: parsing, validation errors (file + line), digests, catalog."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hermitbuild.errors import SyscallError
from hermitbuild.syscalls import EMPTY_DIGEST, digest, load_table, parse_signature
from hermitbuild.syscalls.catalog import CATALOG, KERNEL_SYSCALLS, catalog_entry
from hermitbuild.syscalls.model import TypeProblem, entry_to_yaml, loads_table

from helpers_syscalls import EXAMPLES, REPO

GOOD = """\
syscalls:
  - name: my_syscall
    returns: int
    params: [int x]
    kernel:
      body: |
        return x + 42;
    newlib: plain
    header: new
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> SyscallError:
    path = write(tmp_path, text)
    with pytest.raises(SyscallError) as info:
        load_table(path)
    err = info.value
    assert err.file == str(path), "every table error names the file"
    return err


def entry(**over: str) -> str:
    fields = {"name": "my_call", "returns": "int", "params": "[int x]", "kernel": "{stub: 0}",
              "newlib": "plain", "header": "new"}
    fields.update(over)
    lines = ["syscalls:", "  - name: " + fields.pop("name")]
    lines += [f"    {k}: {v}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def test_shipped_table_is_empty_and_valid() -> None:
    table = load_table(REPO / "syscalls" / "table.yaml")
    assert table.entries == ()
    assert digest(table, "kernel") == EMPTY_DIGEST == digest(table, "newlib")


def test_examples_are_the_guides() -> None:
    table = load_table(EXAMPLES)
    assert table.names() == ["my_syscall", "rename"]
    my, ren = table.entries
    assert (my.body or "").strip() == "return x + 42;" and my.newlib == "plain" and my.new_header
    assert ren.stub == "0" and ren.newlib == "reentrant" and ren.header == ("stdio.h",)
    assert [p.newlib() for p in ren.params] == ["const char *oldpath", "const char *newpath"]


def test_good_table_and_lines(tmp_path: Path) -> None:
    table = load_table(write(tmp_path, GOOD))
    assert table.names() == ["my_syscall"]
    assert table.entries[0].line == 2


def test_malformed_yaml(tmp_path: Path) -> None:
    err = error_of(tmp_path, "syscalls:\n  - name: x\n    returns: [int\n")
    assert "malformed YAML" in err.why and err.line is not None


def test_unknown_top_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "syscalls: []\nsyscall: []\n")
    assert err.line == 2 and "unknown key 'syscall'" in err.why


def test_unknown_entry_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(retrun="int"))
    assert err.line == 8 and err.field == "retrun"


def test_unknown_kernel_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(kernel="\n      stub: 0\n      bodyy: x"))
    assert err.field == "kernel.bodyy" and err.line == 7


@pytest.mark.parametrize("name", ["2fast", "my-call", "with space", ""])
def test_name_not_identifier(tmp_path: Path, name: str) -> None:
    err = error_of(tmp_path, entry(name=repr(name)))
    assert err.field == "name" and err.line == 2


@pytest.mark.parametrize("name", ["int", "return", "while", "_Bool"])
def test_name_keyword(tmp_path: Path, name: str) -> None:
    err = error_of(tmp_path, entry(name=name))
    assert "keyword" in err.why and err.line == 2


def test_duplicate(tmp_path: Path) -> None:
    text = entry() + entry().replace("syscalls:\n", "")
    err = error_of(tmp_path, text)
    assert "duplicate" in err.why and err.line == 8 and "line 2" in err.why


def test_kernel_clash_bundled_list(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(name="close"))
    assert "sys_close" in err.why and "kernel/syscall.c:417" in err.why and err.line == 2
    err = error_of(tmp_path, entry(name="now"))  # lwIP's sys_now shares the namespace
    assert "lwip/src/arch/sys_arch.c" in err.why


def test_newlib_clash_bundled_list(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(name="unlink", params="[const char *path]"))
    assert "libc/sys/hermit/unlink.c" in err.why and err.line == 2 and "patches/" in err.fix


def test_bundled_kernel_list_matches_pinned_syscall_c() -> None:
    for name in ("getpid", "read", "write", "open", "close", "lseek", "sbrk", "stat", "kill", "signal",
                 "fork", "wait", "execve"):
        assert name in KERNEL_SYSCALLS
    assert "rename" not in KERNEL_SYSCALLS and "my_syscall" not in KERNEL_SYSCALLS


@pytest.mark.parametrize("field,value,needle", [
    ("returns", "mystery_t", "unknown type `mystery_t`"),
    ("params", "[struct foo *f]", "unknown type `struct foo`"),
    ("params", "[struct stat st]", "by value"),
    ("params", "[int]", "no parameter name"),
    ("params", "['void (*cb)(int)']", "function pointers"),
    ("params", "[int x, long x]", "used twice"),
    ("params", "[int x, ...]", "variadic"),
    ("returns", "unsigned signed", "combination"),
])
def test_unknown_or_bad_types(tmp_path: Path, field: str, value: str, needle: str) -> None:
    err = error_of(tmp_path, entry(**{field: value}))
    assert needle in err.why and err.field == field
    assert err.line == {"returns": 3, "params": 4}[field]


def test_kernel_needs_one_of_stub_body(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(kernel="{stub: 0, body: 'return 1;'}"))
    assert "exactly one" in err.why and err.line == 5
    err = error_of(tmp_path, entry(kernel="{}"))
    assert "exactly one" in err.why


def test_bad_mode_header_number(tmp_path: Path) -> None:
    assert error_of(tmp_path, entry(newlib="fancy")).field == "newlib"
    assert error_of(tmp_path, entry(header="'<stdio.h>'")).field == "header"
    assert error_of(tmp_path, entry(number="-1")).field == "number"
    err = error_of(tmp_path, entry(number="3"))  # __NR_close
    assert "'close'" in err.why and err.field == "number"


def test_reentrant_needs_signed_or_pointer(tmp_path: Path) -> None:
    err = error_of(tmp_path, entry(returns="unsigned int", newlib="reentrant"))
    assert "plain" in err.fix and err.field == "newlib"
    err = error_of(tmp_path, entry(returns="void", kernel="{stub: 1}"))
    assert "void" in err.why


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SyscallError) as info:
        load_table(tmp_path / "nope.yaml")
    assert "does not exist" in info.value.why


def test_parse_signature() -> None:
    returns, name, params = parse_signature("int my_syscall(int x)")
    assert (returns.newlib(), name, [p.newlib() for p in params]) == ("int", "my_syscall", ["int x"])
    returns, name, params = parse_signature("char* getcwd(char* buf , size_t size);")
    assert returns.newlib("getcwd") == "char *getcwd" and params[1].kernel() == "size_t size"
    returns, name, params = parse_signature("long long  unsigned int f(void)")
    assert returns.newlib() == "unsigned long long int" and params == ()
    _, _, params = parse_signature("int f(const char * const *argv, int fd[2], uid_t u)")
    assert [p.newlib() for p in params] == ["const char *const *argv", "int fd[2]", "uid_t u"]
    assert params[2].kernel() == "unsigned short u"  # the kernel has no uid_t: same ABI
    with pytest.raises(TypeProblem):
        parse_signature("my_syscall(int x)")
    with pytest.raises(TypeProblem):
        parse_signature("int f(int x")


def test_catalog_has_the_issue_calls() -> None:
    wanted = ["rename", "mkdir", "rmdir", "access", "chdir", "getcwd", "truncate", "ftruncate", "fsync",
              "dup", "dup2", "pipe", "chmod", "fchmod", "utime"]
    assert set(wanted) <= set(CATALOG) and len(CATALOG) >= 40
    for name in CATALOG:
        e = catalog_entry(name)
        assert e is not None and e.name == name and name not in KERNEL_SYSCALLS


def test_digest_per_side(tmp_path: Path) -> None:
    base = load_table(EXAMPLES)
    k, n = digest(base, "kernel"), digest(base, "newlib")
    assert len(k) == 64 and k != n != EMPTY_DIGEST
    # a kernel-only change does not touch the newlib digest, and vice versa
    text = EXAMPLES.read_text()
    changed_kernel = loads_table(text.replace("return x + 42;", "return x + 43;"), EXAMPLES)
    assert digest(changed_kernel, "kernel") != k and digest(changed_kernel, "newlib") == n
    changed_newlib = loads_table(text.replace("newlib: plain", "newlib: reentrant"), EXAMPLES)
    assert digest(changed_newlib, "newlib") != n and digest(changed_newlib, "kernel") == k
    assert digest(loads_table(text, tmp_path / "other.yaml"), "kernel") == k  # path does not matter


def test_entry_to_yaml_round_trips(tmp_path: Path) -> None:
    for name in CATALOG:
        e = catalog_entry(name)
        text = "syscalls:\n" + entry_to_yaml(e)
        back = loads_table(text, tmp_path / "t.yaml").entries[0]
        assert (back.returns, back.params, back.newlib, back.header, back.stub) == \
            (e.returns, e.params, e.newlib, e.header, e.stub)
    my = load_table(EXAMPLES).entries[0]
    back = loads_table("syscalls:\n" + entry_to_yaml(my), tmp_path / "t.yaml").entries[0]
    assert back.body == my.body
