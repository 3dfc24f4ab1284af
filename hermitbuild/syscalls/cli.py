"""``doit syscall ...``: add, remove, apply, list, check, export, catalog.

Contract: :func:`cli_main` takes the arguments after ``doit syscall`` (doit hands
them over through the task's ``pos_arg``), prints to stdout/stderr (this is the
one place in the package that prints) and returns an exit status: 0 success,
1 error or drift (``check``), 2 bad usage.  Every
:class:`~hermitbuild.errors.HermitBuildError` is printed without a traceback.

``add`` and ``remove`` edit ``syscalls/table.yaml`` at text level (comments and
the other entries are kept), validate the result, and apply it to the prepared
trees in one transaction: table and trees are all changed or none.  Trees that
are not prepared yet are skipped (``doit toolchain`` generates into them).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Callable, Sequence

from ..errors import HermitBuildError, SyscallError
from ..fsutil import Transaction, read_text
from ..settings import Settings
from . import emit, libcnames
from .automake import host_automake
from .ccheck import syntax_errors
from .catalog import CATALOG, KERNEL_SYSCALLS, NEWLIB_SOURCES, catalog_entry
from .export import export_patches
from .model import Entry, Table, TypeProblem, check_name, load_table, loads_table, parse_signature
from .tablefile import add_entry_text, remove_entry_text
from .tree import (apply_kernel, apply_newlib, drift, generated_in_kernel, generated_in_newlib,
                   makefile_sources, newlib_root, scan_kernel_syscalls)

Trees = Callable[[], "tuple[Path | None, Path | None]"]
Automake = Callable[[Path], None]


def default_trees(settings: Settings) -> tuple[Path | None, Path | None]:
    """The prepared trees when they exist: src/hermit and src/newlib."""
    kernel = settings.src_dir / "hermit"
    newlib = settings.src_dir / "newlib"
    return (kernel if kernel.is_dir() else None, newlib if newlib.is_dir() else None)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doit syscall", description="Manage the project's system calls "
                                "(syscalls/table.yaml) and the code generated from them.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--table", type=Path, help="table file (default: syscalls/table.yaml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser_class = sub.add_parser

    def add_parser(name: str, **kw) -> argparse.ArgumentParser:  # noqa: ANN003
        return parser_class(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    a = sub.add_parser("add", help="add an entry to the table and apply it",
                       description="Add NAME. Well-known calls (`doit syscall catalog`) need nothing "
                       "more; others need SIGNATURE, e.g. 'int my_syscall(int x)'.")
    a.add_argument("name")
    a.add_argument("signature", nargs="?", help="C prototype, e.g. 'int my_syscall(int x)'")
    impl = a.add_mutually_exclusive_group()
    impl.add_argument("--body", help="kernel body (C statements), e.g. 'return x + 42;'")
    impl.add_argument("--body-file", type=Path, help="file holding the kernel body")
    impl.add_argument("--stub", help="kernel stub return value (default 0, NULL for pointers)")
    mode = a.add_mutually_exclusive_group()
    mode.add_argument("--plain", action="store_const", const="plain", dest="mode",
                      help="newlib wrapper calls sys_NAME directly (default for new calls)")
    mode.add_argument("--reentrant", action="store_const", const="reentrant", dest="mode",
                      help="NAME() calls _NAME_r() which sets errno (default for catalog calls)")
    hdr = a.add_mutually_exclusive_group()
    hdr.add_argument("--header", action="append", help="standard header that declares NAME")
    hdr.add_argument("--new-header", action="store_true", help="create libc/include/NAME.h")
    a.add_argument("--number", type=int, help="__NR_NAME number")
    a.add_argument("--include", action="append", default=[], help="extra kernel include for --body")
    a.add_argument("--doc", default="", help="one-line description (a comment in the code)")
    a.add_argument("--no-apply", action="store_true", help="only edit the table")
    r = sub.add_parser("remove", help="remove an entry and everything it generated")
    r.add_argument("name")
    r.add_argument("--no-apply", action="store_true", help="only edit the table")
    sub.add_parser("apply", help="bring the prepared trees in line with the table")
    sub.add_parser("list", help="the table vs. what the prepared trees contain")
    sub.add_parser("check", help="exit 1 when the trees drift from the table (for CI)")
    e = sub.add_parser("export", help="write git-format patches against the pinned commits")
    e.add_argument("--out", type=Path, help="output directory (default: build/syscall-patches)")
    sub.add_parser("catalog", help="the well-known calls `add` knows by name")
    return p


def cli_main(argv: Sequence[str], settings: Settings, *, trees: Trees | None = None,
             automake: Automake | None = None) -> int:
    """Run one ``doit syscall`` command; see the module docstring."""
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    table_path = getattr(args, "table", None) or settings.syscalls_dir / "table.yaml"
    if not table_path.is_absolute():
        table_path = settings.root / table_path
    kernel, newlib = (trees or (lambda: default_trees(settings)))()
    run_automake = automake or host_automake(settings)
    try:
        handler = {"add": _add, "remove": _remove, "apply": _apply, "list": _list, "check": _check,
                   "export": _export, "catalog": _catalog}[args.command]
        return handler(args, settings, table_path, kernel, newlib, run_automake)
    except HermitBuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- commands


class RefusedError(SyscallError):
    """An error about the command line (not about a file)."""

    unplaced = "doit syscall: refused"


def _refused(why: str, fix: str) -> SyscallError:
    return RefusedError(why, fix)


def _known_kernel(kernel: Path | None) -> dict[str, str]:
    return scan_kernel_syscalls(kernel) if kernel is not None else dict(KERNEL_SYSCALLS)


def _known_newlib(newlib: Path | None) -> list[str]:
    if newlib is None:
        return list(NEWLIB_SOURCES)
    am = newlib_root(newlib) / emit.NEWLIB_MAKEFILE_AM
    return list(makefile_sources(read_text(am, SyscallError), am))


def _lenient(table_path: Path) -> Table:
    """The current table without the clash checks (to find names, e.g. to remove a clash)."""
    return load_table(table_path, known_kernel={}, known_newlib=())


def _load(table_path: Path, kernel: Path | None, newlib: Path | None) -> Table:
    return load_table(table_path, known_kernel=_known_kernel(kernel), known_newlib=_known_newlib(newlib))


def _commit(table_path: Path, new_text: str | None, table: Table, kernel: Path | None,
            newlib: Path | None, automake: Automake, apply: bool) -> list[Path]:
    """Write the table (if new_text) and apply it to the trees, all or nothing."""
    with Transaction() as tx:
        written: list[Path] = []
        if new_text is not None:
            tx.apply(table_path, new_text.encode("utf-8"))
            written.append(table_path)
        if apply and kernel is not None:
            written += apply_kernel(tx, kernel, table)
        if apply and newlib is not None:
            written += apply_newlib(tx, newlib, table, automake)
    return written


def _report(written: list[Path], kernel: Path | None, newlib: Path | None, apply: bool) -> None:
    for path in written:
        state = "written" if path.exists() else "removed"
        print(f"  {state}: {path}")
    if apply:
        for label, tree in (("kernel", kernel), ("newlib", newlib)):
            if tree is None:
                print(f"  note: the {label} tree is not prepared yet; `doit toolchain` generates into it")
    if apply and written:
        print("next: `doit toolchain` rebuilds what depends on the change")


def _entry_from_args(args: argparse.Namespace) -> Entry:
    body = args.body
    if args.body_file is not None:
        body = read_text(args.body_file, SyscallError, fix="check the --body-file path; the body must be UTF-8 C")
    known = catalog_entry(args.name, stub=args.stub, body=body, number=args.number)
    if args.signature:
        try:
            returns, name, params = parse_signature(args.signature)
        except TypeProblem as exc:
            raise _refused(exc.why, exc.fix) from None
        if name != args.name:
            raise _refused(f"the signature names {name!r}, not {args.name!r}",
                           f"write e.g. 'int {args.name}(int x)'")
    elif known is None:
        close = difflib.get_close_matches(args.name, CATALOG, n=3)
        raise _refused(f"{args.name!r} is not in the catalog of well-known calls, so its signature "
                       "is needed",
                       f"give it: doit syscall add {args.name} 'int {args.name}(int x)' "
                       "[--body 'return x + 42;']"
                       + (f" (did you mean {', '.join(close)}?)" if close else ""))
    else:
        returns, params = known.returns, known.params
    if body is None:
        stub = args.stub if args.stub is not None else (
            "" if returns.is_void else "NULL" if returns.is_pointer else "0")
        if returns.is_void and stub not in ("", None):
            raise _refused(f"{args.name} returns void, so --stub makes no sense", "drop --stub")
    else:
        stub = None
    mode = args.mode or (known.newlib if known else "plain")
    if args.new_header:
        header: tuple[str, ...] = ()
    elif args.header:
        header = tuple(args.header)
    else:
        header = known.header if known else ()
    return Entry(name=args.name, returns=returns, params=params, newlib=mode, header=header,
                 stub=stub, body=body, includes=tuple(args.include), number=args.number,
                 doc=args.doc)


def _read_table_text(path: Path) -> str:
    if not path.exists():
        return "syscalls: []\n"
    return read_text(path, SyscallError)


def _add(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
         newlib: Path | None, automake: Automake) -> int:
    current = _lenient(table_path) if table_path.exists() else Table(table_path)
    if current.get(args.name):
        raise _refused(f"{args.name!r} is already in the table ({table_path}:{current.get(args.name).line})",
                       f"remove it first (`doit syscall remove {args.name}`) or edit the table")
    why = check_name(args.name)
    if why:
        raise _refused(why, "use a C identifier that is not a keyword, e.g. my_syscall")
    known = _known_kernel(kernel)
    if args.name in known:
        raise _refused(f"the kernel already has sys_{args.name} ({known[args.name]})",
                       f"choose another name, or change sys_{args.name} with a patch under patches/")
    # the pinned newlib's functions are bundled; an overridden newlib is scanned (about a second)
    libc = libcnames.defined(newlib if "newlib" in settings.overrides else None)
    if args.name in libc and args.name not in CATALOG:
        raise _refused(f"newlib already defines {args.name}() (newlib/{libc[args.name]}): it is a C "
                       "library function, not a system call",
                       "choose another name; to change newlib's own function, carry a patch under "
                       "patches/newlib/ (see the README's Patches section)")
    entry = _entry_from_args(args)
    text = add_entry_text(_read_table_text(table_path), entry, table_path)
    try:
        table = loads_table(text, table_path, known_kernel=known, known_newlib=_known_newlib(newlib))
        _refuse_syntax_errors([table.get(args.name)], table_path)
    except SyscallError as err:  # about the new entry, which exists only on the command line
        raise _refused(f"{args.name}: {err.why}", f"{err.fix}; nothing was written") from None
    written = _commit(table_path, text, table, kernel, newlib, automake, not args.no_apply)
    print(f"added {args.name}: {emit.newlib_proto(table.get(args.name))}")
    _report(written, kernel, newlib, not args.no_apply)
    return 0


def _remove(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
            newlib: Path | None, automake: Automake) -> int:
    current = _lenient(table_path)
    if current.get(args.name) is None:
        raise _refused(f"{args.name!r} is not in the table {table_path}", "see `doit syscall list`")
    text = remove_entry_text(read_text(table_path, SyscallError), args.name, table_path)
    table = loads_table(text, table_path, known_kernel=_known_kernel(kernel),
                        known_newlib=_known_newlib(newlib))
    if table.get(args.name) is not None or len(table) != len(current) - 1:
        raise _refused(f"could not cut the block of {args.name!r} out of {table_path} cleanly",
                       "edit the table by hand, then run `doit syscall apply`")
    written = _commit(table_path, text, table, kernel, newlib, automake, not args.no_apply)
    print(f"removed {args.name}")
    _report(written, kernel, newlib, not args.no_apply)
    return 0


def _apply(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
           newlib: Path | None, automake: Automake) -> int:
    table = _load(table_path, kernel, newlib)
    written = _commit(table_path, None, table, kernel, newlib, automake, True)
    if not written:
        print("trees already match the table")
    _report(written, kernel, newlib, True)
    return 0


def _list(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
          newlib: Path | None, automake: Automake) -> int:
    table = _load(table_path, kernel, newlib)
    in_kernel = generated_in_kernel(kernel) if kernel is not None else None
    in_newlib = generated_in_newlib(newlib) if newlib is not None else None
    names = table.names() + sorted(((in_kernel or set()) | (in_newlib or set())) - set(table.names()))
    if not names:
        print(f"no system calls in {table_path}")
        return 0
    print(f"{'name':<16} {'table':<6} {'kernel':<8} {'newlib':<8} prototype")
    for name in names:
        entry = table.get(name)
        def mark(found: set[str] | None) -> str:
            if found is None:
                return "-"
            return ("yes" if name in found else "MISSING") if entry else ("ORPHAN" if name in found else "")
        proto = emit.newlib_proto(entry) if entry else ""
        extra = f" [{entry.newlib}, header {'new' if entry.new_header else ' '.join(entry.header)}]" if entry else ""
        print(f"{name:<16} {'yes' if entry else 'no':<6} {mark(in_kernel):<8} {mark(in_newlib):<8} "
              f"{proto}{extra}")
    if kernel is None or newlib is None:
        print("('-': tree not prepared yet)")
    return 0


def _check(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
           newlib: Path | None, automake: Automake) -> int:
    table = _load(table_path, kernel, newlib)
    _refuse_syntax_errors(list(table.entries), table_path)
    reasons = drift(kernel, newlib, table)
    if reasons:
        print(f"the prepared trees drift from {table_path}:")
        for reason in reasons:
            print(f"  {reason}")
        print("fix: `doit syscall apply` (or `doit toolchain`), or change the table")
        return 1
    missing = [label for label, tree in (("kernel", kernel), ("newlib", newlib)) if tree is None]
    print(f"{table_path}: {len(table)} system call(s), valid"
          + ("; trees in sync" if len(missing) < 2 else "")
          + (f"; not prepared: {', '.join(missing)}" if missing else ""))
    return 0


def _refuse_syntax_errors(entries: list[Entry], table_path: Path) -> None:
    """A real compile (host cc -fsyntax-only) of the generated kernel code, before anything is written."""
    problems = syntax_errors(e for e in entries if e is not None)
    if problems:
        name, message = problems[0]
        entry = next(e for e in entries if e is not None and e.name == name)
        raise SyscallError(f"the kernel code generated for {name!r} does not compile: {message}",
                           "fix its body (`--body` / `kernel.body`)",
                           file=table_path, line=entry.line or None, field="kernel.body")


def _export(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
            newlib: Path | None, automake: Automake) -> int:
    table = _load(table_path, kernel, newlib)
    if kernel is None and newlib is None:
        raise _refused("no prepared tree to export from", "run `doit toolchain` (or `doit prepare`) first")
    out = args.out or settings.build_dir / "syscall-patches"
    written = export_patches(kernel, newlib, table, out, automake)
    if not written:
        print("nothing to export: the table generates no changes")
    for path in written:
        print(f"  wrote {path}")
    return 0


def _catalog(args: argparse.Namespace, settings: Settings, table_path: Path, kernel: Path | None,
             newlib: Path | None, automake: Automake) -> int:
    for name in sorted(CATALOG):
        signature, header, mode = CATALOG[name]
        print(f"{name:<14} {signature:<70} <{header}> {mode}")
    return 0
