"""Generation into the fixture trees: golden files, idempotence, removal, hand edits,
clashes and all-or-nothing.  automake is the real automake-1.11 unless a test is about
something else (then a recorder stands in)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hermitbuild.errors import CommandError, SyscallError
from hermitbuild.syscalls import generate_kernel, generate_newlib, load_table
from hermitbuild.syscalls.model import Table, loads_table
from hermitbuild.syscalls.tree import drift, scan_kernel_syscalls

from helpers_syscalls import EXAMPLES, GOLDEN, HERMIT_REL, prepared_template, snapshot, trees  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("automake-1.11") is None, reason="needs automake-1.11")

EMPTY = Table(path=Path("table.yaml"), entries=())


def examples() -> Table:
    return load_table(EXAMPLES)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, directory: Path) -> None:
        self.calls.append(directory)


def test_golden_files(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    written_k = generate_kernel(kernel, examples())
    written_n = generate_newlib(newlib, examples(), None)
    golden = sorted(p for p in GOLDEN.rglob("*") if p.is_file())
    assert len(golden) == 8  # syscall.h among them: the same as the pristine one
    for path in golden:
        rel = path.relative_to(GOLDEN)
        tree = kernel if rel.parts[0] == "hermit" else newlib
        actual = tree / Path(*rel.parts[1:])
        assert actual.read_text() == path.read_text(), f"{actual} differs from golden {path}"
    assert kernel / "kernel/syscalls_generated.c" in written_k
    assert kernel / "include/hermit/syscalls_generated.h" in written_k
    assert kernel / "include/hermit/syscall.h" not in written_k  # included by dozens of kernel files
    assert newlib / HERMIT_REL / "Makefile.in" in written_n
    assert not (newlib / HERMIT_REL / "autom4te.cache").exists()


def test_idempotent_and_same_from_any_state(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    generate_kernel(kernel, examples())
    generate_newlib(newlib, examples(), None)
    first = snapshot(kernel, newlib)
    rec = Recorder()
    assert generate_kernel(kernel, examples()) == []
    assert generate_newlib(newlib, examples(), rec) == []
    assert rec.calls == [], "automake only runs when Makefile.am changed"
    assert snapshot(kernel, newlib) == first
    assert drift(kernel, newlib, examples()) == []
    # from another generated state back to the same table: the same bytes again
    other = loads_table(EXAMPLES.read_text().replace("stub: 0", "stub: -ENOSYS"), EXAMPLES)
    generate_kernel(kernel, Table(path=EXAMPLES, entries=other.entries[1:]))
    assert snapshot(kernel) != {k: v for k, v in first.items() if k.startswith(str(kernel))}
    generate_kernel(kernel, examples())
    assert snapshot(kernel, newlib) == first


def test_remove_one_entry_then_everything_gives_pristine(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    pristine = snapshot(kernel, newlib)
    generate_kernel(kernel, examples())
    generate_newlib(newlib, examples(), None)
    assert snapshot(kernel, newlib) != pristine
    only_my = Table(path=EXAMPLES, entries=examples().entries[:1])
    generate_kernel(kernel, only_my)
    generate_newlib(newlib, only_my, None)
    hermit = newlib / HERMIT_REL
    assert not (hermit / "rename.c").exists() and (hermit / "my_syscall.c").exists()
    assert "sys_rename" not in (kernel / "kernel/syscalls_generated.c").read_text()
    assert "sys_rename" not in (hermit / "syscall.h").read_text()
    assert "rename" not in (hermit / "Makefile.am").read_text()
    assert "lib_a-rename" not in (hermit / "Makefile.in").read_text()
    assert "lib_a-my_syscall.$(OBJEXT)" in (hermit / "Makefile.in").read_text()
    assert drift(kernel, newlib, only_my) == []
    generate_kernel(kernel, EMPTY)
    generate_newlib(newlib, EMPTY, None)
    assert snapshot(kernel, newlib) == pristine  # Makefile.in included: automake 1.11 is stable


def test_hand_edits_outside_regions_survive(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    generate_kernel(kernel, examples())
    generate_newlib(newlib, examples(), Recorder())
    header = kernel / "include/hermit/syscall.h"
    text = header.read_text()
    text = text.replace("#ifndef __KERNEL__\ninline", "/* hand edit below */\n#ifndef __KERNEL__\ninline")
    text = text.replace("tid_t sys_getpid(void);", "tid_t sys_getpid(void); /* hand edit above */")
    header.write_text(text)
    am = newlib / HERMIT_REL / "Makefile.am"
    am.write_text(am.read_text() + "\n# a hand-written rule\nfoo:\n\ttrue\n")
    only_my = Table(path=EXAMPLES, entries=examples().entries[:1])
    generate_kernel(kernel, only_my)
    generate_newlib(newlib, only_my, Recorder())
    assert "/* hand edit below */" in header.read_text() and "/* hand edit above */" in header.read_text()
    assert "# a hand-written rule\nfoo:\n\ttrue\n" in am.read_text()
    assert "sys_rename" not in (kernel / "include/hermit/syscalls_generated.h").read_text()


def test_region_of_older_trees_is_removed(trees: tuple[Path, Path]) -> None:
    """Trees generated before the prototypes had their own header carry them in syscall.h."""
    kernel, _ = trees
    header = kernel / "include/hermit/syscall.h"
    pristine = header.read_text()
    header.write_text(pristine.replace("#define __NR_fork\t\t11\n", "#define __NR_fork\t\t11\n\n"
                                       "/* BEGIN hermitbuild generated syscalls: edit syscalls/table.yaml, "
                                       "not this region */\nint sys_my_syscall(int x);\n"
                                       "/* END hermitbuild generated syscalls */\n"))
    assert header.read_text() != pristine
    generate_kernel(kernel, examples())
    assert header.read_text() == pristine
    assert "int sys_my_syscall(int x);" in (kernel / "include/hermit/syscalls_generated.h").read_text()


def test_automake_failure_rolls_back_everything(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees

    def broken(directory: Path) -> None:
        (directory / "Makefile.in").write_text("half written")
        raise CommandError(["automake"], 1, cwd=directory)

    generate_newlib(newlib, examples(), broken)  # Makefile.in edited without automake
    before = snapshot(newlib)
    with pytest.raises(CommandError):  # the last call removed: automake writes the plain variable
        generate_newlib(newlib, EMPTY, broken)
    assert snapshot(newlib) == before


def test_clash_in_a_later_entry_writes_nothing(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    before = snapshot(kernel, newlib)
    text = EXAMPLES.read_text() + "\n  - name: unlink\n    returns: int\n    params: [const char *path]\n" \
        "    kernel: {stub: 0}\n    newlib: reentrant\n    header: unistd.h\n"
    table = loads_table(text, EXAMPLES, known_newlib=())  # the tree check, not the bundled list
    with pytest.raises(SyscallError) as info:
        generate_newlib(newlib, table, Recorder())
    assert "Makefile.am:8" in info.value.why and info.value.line == table.get("unlink").line
    assert snapshot(kernel, newlib) == before


def test_kernel_clash_found_in_tree(trees: tuple[Path, Path]) -> None:
    kernel, _ = trees
    syscall_c = kernel / "kernel/syscall.c"
    syscall_c.write_text(syscall_c.read_text() + "\nint sys_my_syscall(int x)\n{\n\treturn x;\n}\n")
    found = scan_kernel_syscalls(kernel)
    assert found["my_syscall"].startswith("kernel/syscall.c:")
    assert found["now"] == "lwip/src/arch/sys_arch.c:7"
    assert found["stat"].startswith("kernel/syscall.c:") and "close_all" not in found
    assert found["fork"].startswith("include/hermit/syscall.h:")  # declared only
    before = snapshot(kernel)
    with pytest.raises(SyscallError) as info:
        generate_kernel(kernel, examples())
    assert "sys_my_syscall" in info.value.why and "kernel/syscall.c:" in info.value.why
    assert snapshot(kernel) == before


def test_generated_code_is_not_a_clash(trees: tuple[Path, Path]) -> None:
    kernel, _ = trees
    generate_kernel(kernel, examples())
    assert "my_syscall" not in scan_kernel_syscalls(kernel)
    assert "rename" not in scan_kernel_syscalls(kernel)


def test_newlib_file_or_header_clash(trees: tuple[Path, Path]) -> None:
    _, newlib = trees
    hermit = newlib / HERMIT_REL
    (hermit / "rename.c").write_text("/* hand-written rename */\n")
    with pytest.raises(SyscallError) as info:
        generate_newlib(newlib, examples(), Recorder())
    assert "rename.c" in info.value.why
    (hermit / "rename.c").unlink()
    (newlib / "newlib/libc/include/my_syscall.h").write_text("/* hand-written */\n")
    with pytest.raises(SyscallError) as info:
        generate_newlib(newlib, examples(), Recorder())
    assert "my_syscall.h" in info.value.why and info.value.field == "header"


def test_missing_standard_header(trees: tuple[Path, Path]) -> None:
    _, newlib = trees
    table = loads_table(EXAMPLES.read_text().replace("header: stdio.h", "header: stdoi.h"), EXAMPLES)
    with pytest.raises(SyscallError) as info:
        generate_newlib(newlib, table, Recorder())
    assert "stdoi.h" in info.value.why


def test_numbers_go_to_both_headers_and_clash_with_tree(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    table = loads_table(EXAMPLES.read_text().replace("    header: new\n", "    header: new\n    number: 40\n"),
                        EXAMPLES)
    generate_kernel(kernel, table)
    generate_newlib(newlib, table, Recorder())
    assert "#define __NR_my_syscall\t40" in (kernel / "include/hermit/syscalls_generated.h").read_text()
    assert "#define __NR_my_syscall\t40" in (newlib / HERMIT_REL / "syscall.h").read_text()
    header = kernel / "include/hermit/syscall.h"
    header.write_text(header.read_text().replace("#define __NR_fork\t\t11", "#define __NR_fork\t\t11\n"
                                                 "#define __NR_custom\t40"))
    with pytest.raises(SyscallError) as info:
        generate_kernel(kernel, table)
    assert "__NR_custom" in info.value.why and info.value.field == "number"


def test_broken_markers(trees: tuple[Path, Path]) -> None:
    kernel, newlib = trees
    generate_newlib(newlib, examples(), Recorder())
    header = newlib / HERMIT_REL / "syscall.h"
    lines = header.read_text().split("\n")
    end = next(i for i, ln in enumerate(lines) if ln.startswith("/* END hermitbuild"))
    del lines[end]
    header.write_text("\n".join(lines))
    with pytest.raises(SyscallError) as info:
        generate_newlib(newlib, EMPTY, Recorder())
    assert info.value.file == str(header) and info.value.line is not None
    assert "markers" in info.value.why and f"{header}:{info.value.line}" in info.value.why
    assert str(info.value).startswith("syscall generation failed")  # a tree problem, not the table's
    kheader = kernel / "include/hermit/syscall.h"  # a lone marker of an older tree's region
    kheader.write_text(kheader.read_text() + "/* END hermitbuild generated syscalls */\n")
    with pytest.raises(SyscallError) as info:
        generate_kernel(kernel, examples())
    assert info.value.file == str(kheader) and "markers" in info.value.why


def test_not_a_tree(tmp_path: Path) -> None:
    with pytest.raises(SyscallError):
        generate_kernel(tmp_path, examples())
    with pytest.raises(SyscallError):
        generate_newlib(tmp_path, examples(), Recorder())
