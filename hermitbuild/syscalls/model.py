"""The syscall table: C type model, entries, loading, validation and digests.

Contract:
- :func:`load_table` reads ``syscalls/table.yaml`` (schema: ``syscalls/README.md``)
  and returns a validated, frozen :class:`Table`.  Every problem (malformed YAML,
  unknown keys, names that are not C identifiers or are C keywords, duplicates,
  names whose ``sys_<name>`` the kernel already has or whose ``<name>.c`` newlib's
  libc/sys/hermit already builds, unknown types, bad numbers)
  raises :class:`~hermitbuild.errors.SyscallError` naming the file, the line and
  the field.  Loading never writes anything.
- :func:`parse_signature` turns ``"int my_syscall(int x)"`` into return type,
  name and parameters with the same type rules as the table.
- :func:`digest` is the sha256 (hex) of everything from the table that reaches one
  side (``"kernel"`` or ``"newlib"``), plus the generator version.  An empty
  table always gives :data:`EMPTY_DIGEST` (the pristine trees do not depend on the
  generator then).
- Types are a closed vocabulary (:data:`TYPEDEFS`, :data:`STRUCTS`, C base types),
  so that every type has a known spelling in the kernel (which lacks most POSIX
  typedefs) with the same ABI as newlib's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import SyscallError
from .cbody import balance_problem
from .pinned import KERNEL_SYSCALLS, NEWLIB_SOURCES, NR_NUMBERS
from ..yamlutil import LineDict, LineList, load_yaml, loads_yaml

#: Bump a side's version when the code emitted for it changes, so its digests (and prepared
#: trees, and keys) change too.  kernel 2: prototypes and numbers in syscalls_generated.h.
GENERATOR_VERSIONS = {"kernel": "2", "newlib": "1"}

#: The digest of an empty table (pristine trees).
EMPTY_DIGEST = hashlib.sha256(b"hermitbuild-syscalls:empty").hexdigest()

C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local asm typeof
""".split())

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: typedef -> (kernel spelling with the same ABI as newlib's on x86_64, newlib header defining it).
TYPEDEFS: dict[str, tuple[str, str]] = {
    "size_t": ("size_t", "sys/types.h"),
    "ssize_t": ("ssize_t", "sys/types.h"),
    "off_t": ("off_t", "sys/types.h"),
    "mode_t": ("unsigned int", "sys/types.h"),
    "uid_t": ("unsigned short", "sys/types.h"),
    "gid_t": ("unsigned short", "sys/types.h"),
    "pid_t": ("int", "sys/types.h"),
    "dev_t": ("short", "sys/types.h"),
    "ino_t": ("unsigned short", "sys/types.h"),
    "nlink_t": ("unsigned short", "sys/types.h"),
    "time_t": ("long", "sys/types.h"),
    "useconds_t": ("unsigned long", "sys/types.h"),
    "suseconds_t": ("long", "sys/types.h"),
    "clockid_t": ("unsigned long", "sys/types.h"),
    "intptr_t": ("long", "stdint.h"),
    "uintptr_t": ("uintptr_t", "stdint.h"),
    "int8_t": ("int8_t", "stdint.h"),
    "int16_t": ("int16_t", "stdint.h"),
    "int32_t": ("int32_t", "stdint.h"),
    "int64_t": ("int64_t", "stdint.h"),
    "uint8_t": ("uint8_t", "stdint.h"),
    "uint16_t": ("uint16_t", "stdint.h"),
    "uint32_t": ("uint32_t", "stdint.h"),
    "uint64_t": ("uint64_t", "stdint.h"),
    "tid_t": ("tid_t", "syscall.h"),
}
SIGNED_TYPEDEFS = frozenset({"ssize_t", "off_t", "pid_t", "time_t", "suseconds_t", "intptr_t",
                             "int8_t", "int16_t", "int32_t", "int64_t", "dev_t"})

#: structs that may be passed by pointer (never by value).
STRUCTS = frozenset({"stat", "timeval", "timespec", "timezone", "utimbuf", "tms", "iovec",
                     "dirent", "rusage", "rlimit", "sockaddr", "statvfs", "utsname"})

BASE_WORDS = frozenset({"void", "char", "short", "int", "long", "signed", "unsigned", "float",
                        "double", "_Bool"})
QUALIFIERS = ("const", "volatile")

TOP_KEYS = ("syscalls",)
ENTRY_KEYS = ("name", "returns", "params", "kernel", "newlib", "header", "number", "doc")
KERNEL_KEYS = ("stub", "body", "includes")
NEWLIB_MODES = ("reentrant", "plain")
HEADER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.h\Z")
STUB_RE = re.compile(r"[-+ ()A-Za-z0-9_|]+\Z")

SCHEMA_HINT = "see syscalls/README.md for the table schema"


@dataclass(frozen=True)
class CType:
    """A C type from the closed vocabulary.

    ``base`` is the normalised specifier list without qualifiers (``"unsigned long"``,
    ``"mode_t"``, ``"struct stat"``); ``const`` qualifies the base; ``pointers``
    holds one entry per ``*`` (its qualifier, ``""`` or ``"const"``); ``array`` is
    a parameter's array suffix (``"[2]"``) or ``""``.
    """

    base: str
    const: bool = False
    volatile: bool = False
    pointers: tuple[str, ...] = ()
    array: str = ""

    @property
    def is_void(self) -> bool:
        return self.base == "void" and not self.pointers and not self.array

    @property
    def is_pointer(self) -> bool:
        return bool(self.pointers) or bool(self.array)

    @property
    def struct(self) -> str | None:
        return self.base[len("struct "):] if self.base.startswith("struct ") else None

    @property
    def is_signed_integer(self) -> bool:
        if self.is_pointer:
            return False
        if self.base in TYPEDEFS:
            return self.base in SIGNED_TYPEDEFS
        words = self.base.split()
        return ("unsigned" not in words and "char" not in words and "_Bool" not in words
                and any(w in words for w in ("int", "long", "short", "signed")))

    def _spell(self, base: str, name: str) -> str:
        quals = " ".join(q for q, on in (("const", self.const), ("volatile", self.volatile)) if on)
        text = f"{quals} {base}" if quals else base
        if self.pointers:
            text += " " + "".join("*" + (q + " " if q else "") for q in self.pointers)
            text = text.rstrip()
            if name:
                text += name if text.endswith("*") else " " + name
        elif name:
            text += " " + name
        return text + self.array

    def newlib(self, name: str = "") -> str:
        """The spelling in newlib (POSIX typedef names)."""
        return self._spell(self.base, name)

    def kernel(self, name: str = "") -> str:
        """The spelling in the kernel, which has no POSIX typedefs; same ABI."""
        base = TYPEDEFS[self.base][0] if self.base in TYPEDEFS else self.base
        return self._spell(base, name)

    def typedef_headers(self) -> set[str]:
        return {TYPEDEFS[self.base][1]} if self.base in TYPEDEFS else set()


@dataclass(frozen=True)
class Param:
    ctype: CType
    name: str

    def newlib(self) -> str:
        return self.ctype.newlib(self.name)

    def kernel(self) -> str:
        return self.ctype.kernel(self.name)


@dataclass(frozen=True)
class Entry:
    """One system call of the table (see syscalls/README.md)."""

    name: str
    returns: CType
    params: tuple[Param, ...]
    newlib: str  # "reentrant" | "plain"
    header: tuple[str, ...]  # () means a new header libc/include/<name>.h
    stub: str | None = None  # kernel stub return expression ("" for void)
    body: str | None = None  # kernel body (C statements)
    includes: tuple[str, ...] = ()  # extra kernel includes for the body
    number: int | None = None
    doc: str = ""
    line: int = 0

    @property
    def new_header(self) -> bool:
        return not self.header

    def structs(self) -> list[str]:
        seen: list[str] = []
        for ctype in [self.returns] + [p.ctype for p in self.params]:
            if ctype.struct and ctype.struct not in seen:
                seen.append(ctype.struct)
        return seen

    def typedef_headers(self) -> set[str]:
        out: set[str] = set()
        for ctype in [self.returns] + [p.ctype for p in self.params]:
            out |= ctype.typedef_headers()
        return out

    def kernel_data(self) -> dict[str, Any]:
        return {"name": self.name, "returns": self.returns.kernel(),
                "params": [p.kernel() for p in self.params], "stub": self.stub,
                "body": self.body, "includes": list(self.includes), "number": self.number,
                "doc": self.doc}

    def newlib_data(self) -> dict[str, Any]:
        return {"name": self.name, "returns": self.returns.newlib(),
                "params": [p.newlib() for p in self.params], "newlib": self.newlib,
                "header": list(self.header), "number": self.number, "doc": self.doc}


@dataclass(frozen=True)
class Table:
    path: Path | None
    entries: tuple[Entry, ...] = ()

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> Entry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None

    def __len__(self) -> int:
        return len(self.entries)


# ---------------------------------------------------------------------------- types

_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\*)|(\[\s*[0-9]*\s*\])|(\S))")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        out.append(re.sub(r"\s+", "", m.group(0).strip()) if m.group(3) else m.group(0).strip())
        pos = m.end()
    return [t for t in out if t]


class TypeProblem(ValueError):
    """Raised by the parsers; callers turn it into a SyscallError with a location."""

    def __init__(self, why: str, fix: str) -> None:
        super().__init__(why)
        self.why = why
        self.fix = fix


def _type_fix() -> str:
    return ("use C base types (int, long, unsigned int, char, void, ...), one of the typedefs "
            + ", ".join(sorted(TYPEDEFS)) + ", or a pointer to struct "
            + ", ".join(sorted(STRUCTS)))


def parse_decl(text: str, *, need_name: bool, what: str) -> tuple[CType, str]:
    """Parse ``"const char *path"`` (or a bare type when ``need_name`` is false)."""
    toks = _tokens(text)
    if not toks:
        raise TypeProblem(f"{what} is empty", "write a type and a name, e.g. `int fd`")
    for t in toks:
        if not (IDENT_RE.match(t) or t == "*" or t.startswith("[")):
            if t in ("(", ")"):
                raise TypeProblem(f"{what} {text!r}: function pointers are not supported",
                                  "pass a `void *` or add a typedef to hermitbuild/syscalls/model.py")
            raise TypeProblem(f"{what} {text!r}: unexpected {t!r}", "write `type name`, e.g. `int fd`")
    array = ""
    if toks[-1].startswith("["):
        array = toks.pop()
    name = ""
    if need_name:
        if len(toks) < 2 or not IDENT_RE.match(toks[-1]) or toks[-1] in C_KEYWORDS \
                or toks[-1] in TYPEDEFS or toks[-1] in BASE_WORDS:
            raise TypeProblem(f"{what} {text!r} has no parameter name",
                              "write the type followed by a name, e.g. `const char *path`")
        name = toks.pop()
    elif array:
        raise TypeProblem(f"{what} {text!r}: a return type cannot be an array", "return a pointer")
    const = volatile = False
    words: list[str] = []
    pointers: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "*":
            pointers.append("")
        elif t in QUALIFIERS:
            if pointers:
                if pointers[-1]:
                    raise TypeProblem(f"{what} {text!r}: repeated qualifier", "remove it")
                pointers[-1] = t
            elif t == "const":
                const = True
            else:
                volatile = True
        else:
            if pointers:
                raise TypeProblem(f"{what} {text!r}: type words after '*'",
                                  "write `type *name`, e.g. `const char *path`")
            if t == "struct":
                if i + 1 >= len(toks) or not IDENT_RE.match(toks[i + 1]):
                    raise TypeProblem(f"{what} {text!r}: `struct` without a tag", "write `struct stat *st`")
                words.append(f"struct {toks[i + 1]}")
                i += 1
            else:
                words.append(t)
        i += 1
    if not words:
        raise TypeProblem(f"{what} {text!r} has no type", "write e.g. `int`")
    base = _normalise_base(words, text, what)
    ctype = CType(base=base, const=const, volatile=volatile, pointers=tuple(pointers), array=array)
    if ctype.struct and not ctype.is_pointer:
        raise TypeProblem(f"{what} {text!r}: structs cannot be passed or returned by value",
                          f"pass a pointer: `{ctype.newlib()} *`")
    if base == "void" and not ctype.is_pointer and need_name:
        raise TypeProblem(f"{what} {text!r}: a parameter cannot be void",
                          "for no parameters write `params: []` (or `()` in a signature)")
    return ctype, name


def _normalise_base(words: list[str], text: str, what: str) -> str:
    if len(words) == 1 and (words[0] in TYPEDEFS or words[0].startswith("struct ")):
        if words[0].startswith("struct ") and words[0][7:] not in STRUCTS:
            raise TypeProblem(f"{what} {text!r}: unknown type `{words[0]}`", _type_fix())
        return words[0]
    for w in words:
        if w not in BASE_WORDS:
            raise TypeProblem(f"{what} {text!r}: unknown type `{w}`", _type_fix())
    counts = {w: words.count(w) for w in words}
    longs = counts.get("long", 0)
    if any(c > 1 for w, c in counts.items() if w != "long") or longs > 2 or \
            ("signed" in counts and "unsigned" in counts):
        raise TypeProblem(f"{what} {text!r}: invalid combination of type words", _type_fix())
    core = [w for w in ("void", "char", "short", "int", "float", "double", "_Bool") if w in counts]
    if len(core) > 1 and not (set(core) <= {"short", "int"}):
        raise TypeProblem(f"{what} {text!r}: invalid combination of type words", _type_fix())
    if ("void" in counts or "float" in counts or "_Bool" in counts) and len(words) > 1:
        raise TypeProblem(f"{what} {text!r}: invalid combination of type words", _type_fix())
    if "double" in counts and (set(counts) - {"double", "long"} or longs > 1):
        raise TypeProblem(f"{what} {text!r}: invalid combination of type words", _type_fix())
    # canonical order: (un)signed, short/long..., char/int/double
    out: list[str] = []
    if "unsigned" in counts:
        out.append("unsigned")
    elif "signed" in counts and "char" in counts:
        out.append("signed")
    if "short" in counts:
        out.append("short")
    out.extend(["long"] * longs)
    for w in ("void", "char", "float", "double", "_Bool"):
        if w in counts:
            out.append(w)
    if not any(w in out for w in ("void", "char", "float", "double", "_Bool")):
        if "int" in counts or not ("short" in out or "long" in out):
            out.append("int")
    return " ".join(out)


def parse_signature(text: str) -> tuple[CType, str, tuple[Param, ...]]:
    """Parse ``"int my_syscall(int x)"`` -> (return type, name, params); raises TypeProblem."""
    m = re.fullmatch(r"\s*(?P<head>[^()]+?)\s*\((?P<params>[^()]*)\)\s*;?\s*", text)
    if not m:
        raise TypeProblem(f"signature {text!r} is not `type name(type arg, ...)`",
                          "write e.g. 'int my_syscall(int x)' (quote it on the shell)")
    head = m.group("head")
    hm = re.fullmatch(r"(?P<type>.*?[\s*])\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)", head)
    if not hm:
        raise TypeProblem(f"signature {text!r} has no return type and name",
                          "write e.g. 'int my_syscall(int x)'")
    returns, _ = parse_decl(hm.group("type"), need_name=False, what="return type")
    params = parse_params(m.group("params"))
    return returns, hm.group("name"), params


def parse_params(text: str | Iterable[str]) -> tuple[Param, ...]:
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    if items in ([""], ["void"], []):
        return ()
    params: list[Param] = []
    for i, item in enumerate(items, 1):
        if item == "...":
            raise TypeProblem("variadic functions are not supported",
                              "give the call a fixed parameter list")
        ctype, name = parse_decl(item, need_name=True, what=f"parameter {i}")
        params.append(Param(ctype, name))
    names = [p.name for p in params]
    for n in names:
        if names.count(n) > 1:
            raise TypeProblem(f"parameter name {n!r} is used twice", "rename one of them")
    return tuple(params)


# ---------------------------------------------------------------------------- table


def check_name(name: Any) -> str | None:
    """Why ``name`` cannot be a syscall name, or None when it can."""
    if not isinstance(name, str) or not name:
        return f"name must be a non-empty string, got {name!r}"
    if not IDENT_RE.match(name):
        return f"name {name!r} is not a C identifier (letters, digits, underscores; no leading digit)"
    if name in C_KEYWORDS:
        return f"name {name!r} is a C keyword"
    if name.startswith("_"):
        return f"name {name!r} starts with an underscore (reserved for the implementation)"
    return None


def _err(why: str, fix: str, path: Path | str | None, line: int | None, field: str | None) -> SyscallError:
    return SyscallError(why, fix, file=str(path) if path else None, line=line, field=field)


def table_from_data(data: Any, path: Path | str, *,
                    known_kernel: Mapping[str, str] | None = None,
                    known_newlib: Iterable[str] | None = None) -> Table:
    """Validate parsed YAML (LineDict/LineList) into a Table; see the module docstring.

    ``known_kernel`` maps names whose ``sys_<name>`` the kernel already has to where
    (``"kernel/syscall.c:92"``); ``known_newlib`` are the source files newlib's
    libc/sys/hermit already builds.  Defaults: the bundled lists for the pinned trees.
    """
    known = KERNEL_SYSCALLS if known_kernel is None else known_kernel
    newlib_files = set(NEWLIB_SOURCES if known_newlib is None else known_newlib)
    path = Path(path)
    if data is None:
        data = LineDict()
        data.line, data.key_lines = 1, {}
    if not isinstance(data, dict):
        raise _err("the table must be a mapping with one key `syscalls`", SCHEMA_HINT, path,
                   getattr(data, "line", 1), None)
    for key in data:
        if key not in TOP_KEYS:
            raise _err(f"unknown key {key!r}", "the only top-level key is `syscalls`", path,
                       data.line_of(key), str(key))
    items = data.get("syscalls", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _err("`syscalls` must be a list of entries", SCHEMA_HINT, path,
                   data.line_of("syscalls"), "syscalls")
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    numbers: dict[int, str] = {}
    for index, item in enumerate(items):
        line = items.line_of(index) if isinstance(items, LineList) else None
        entry = _entry_from(item, path, line, index)
        if entry.name in seen:
            raise _err(f"duplicate entry {entry.name!r} (first at line {seen[entry.name]})",
                       "remove or rename one of them", path, entry.line, "name")
        seen[entry.name] = entry.line
        if entry.name in known:
            raise _err(f"the kernel already has sys_{entry.name} ({known[entry.name]})",
                       f"choose another name, or change sys_{entry.name} with a patch under "
                       "patches/ instead of the table", path, entry.line, "name")
        if f"{entry.name}.c" in newlib_files:
            raise _err(f"newlib already has libc/sys/hermit/{entry.name}.c",
                       f"choose another name, or change libc/sys/hermit/{entry.name}.c with a patch "
                       "under patches/ instead of the table", path, entry.line, "name")
        if entry.number is not None:
            clash = numbers.get(entry.number) or NR_NUMBERS.get(entry.number)
            if clash:
                raise _err(f"__NR_ number {entry.number} of {entry.name!r} is already used by {clash!r}",
                           "choose an unused number (HermitCore uses 0-29)", path, entry.line, "number")
            numbers[entry.number] = entry.name
        entries.append(entry)
    return Table(path=path, entries=tuple(entries))


def _entry_from(item: Any, path: Path, line: int | None, index: int) -> Entry:
    where = f"syscalls[{index}]"
    if not isinstance(item, dict):
        raise _err(f"entry {index + 1} must be a mapping (name:, returns:, params:, ...)", SCHEMA_HINT,
                   path, line, where)

    def at(key: str) -> int:
        return item.line_of(key) if isinstance(item, LineDict) else (line or 0)

    for key in item:
        if key not in ENTRY_KEYS:
            raise _err(f"unknown key {key!r} in entry {item.get('name', index + 1)!r}",
                       "valid keys: " + ", ".join(ENTRY_KEYS), path, at(key), str(key))
    for key in ("name", "returns", "kernel", "newlib", "header"):
        if key not in item:
            raise _err(f"entry {item.get('name', index + 1)!r} has no `{key}`", SCHEMA_HINT,
                       path, getattr(item, "line", line), key)
    name = item["name"]
    why = check_name(name)
    if why:
        raise _err(why, "use a C identifier that is not a keyword, e.g. my_syscall", path, at("name"), "name")

    def typed(key: str, fn):  # noqa: ANN001 - small local helper
        try:
            return fn()
        except TypeProblem as exc:
            raise _err(exc.why, exc.fix, path, at(key), key) from None

    if not isinstance(item["returns"], str):
        raise _err("`returns` must be a C type such as `int`", SCHEMA_HINT, path, at("returns"), "returns")
    returns = typed("returns", lambda: parse_decl(item["returns"], need_name=False, what="return type")[0])
    raw_params = item.get("params", [])
    if raw_params is None:
        raw_params = []
    if not isinstance(raw_params, list) or not all(isinstance(p, str) for p in raw_params):
        raise _err("`params` must be a list of `type name` strings, e.g. [const char *path, int mode]",
                   SCHEMA_HINT, path, at("params"), "params")
    params = typed("params", lambda: parse_params(raw_params))

    kernel = item["kernel"]
    stub: str | None = None
    body: str | None = None
    includes: tuple[str, ...] = ()
    if not isinstance(kernel, dict):
        raise _err("`kernel` must be a mapping with `stub: VALUE` or `body: C statements`", SCHEMA_HINT,
                   path, at("kernel"), "kernel")
    kline = kernel.line_of if isinstance(kernel, LineDict) else (lambda k: at("kernel"))
    for key in kernel:
        if key not in KERNEL_KEYS:
            raise _err(f"unknown key {key!r} in `kernel`", "valid keys: stub, body, includes", path,
                       kline(key), f"kernel.{key}")
    if ("stub" in kernel) == ("body" in kernel):
        raise _err("`kernel` needs exactly one of `stub` and `body`",
                   "write `kernel: {stub: 0}` or `kernel: {body: 'return x + 42;'}`", path, at("kernel"), "kernel")
    if "stub" in kernel:
        value = kernel["stub"]
        if returns.is_void:
            if value not in (None, ""):
                raise _err(f"{name} returns void, so its stub cannot return {value!r}",
                           "write `stub: null`", path, kline("stub"), "kernel.stub")
            stub = ""
        else:
            if isinstance(value, bool) or value is None or not isinstance(value, (int, str)) or \
                    not STUB_RE.match(str(value)):
                raise _err(f"stub value {value!r} is not an integer or a simple C expression",
                           "write e.g. `stub: 0` or `stub: -ENOSYS`", path, kline("stub"), "kernel.stub")
            stub = str(value).strip()
    else:
        if not isinstance(kernel["body"], str) or not kernel["body"].strip():
            raise _err("`kernel.body` must be C statements (a YAML string)",
                       "write e.g. `body: |` and the statements indented below", path, kline("body"),
                       "kernel.body")
        body = kernel["body"]
        problem = balance_problem(body)
        if problem:
            raise _err(f"the kernel body of {name!r} cannot compile: {problem}",
                       "fix the C statements of `kernel.body` (balanced (), [] and {} outside strings "
                       "and comments; no `}` of the function itself)", path, kline("body"), "kernel.body")
    if "includes" in kernel:
        inc = kernel["includes"]
        if not isinstance(inc, list) or not all(isinstance(h, str) and HEADER_RE.match(h) for h in inc):
            raise _err("`kernel.includes` must be a list of header paths like hermit/string.h",
                       SCHEMA_HINT, path, kline("includes"), "kernel.includes")
        includes = tuple(inc)

    mode = item["newlib"]
    if mode not in NEWLIB_MODES:
        raise _err(f"`newlib` must be `reentrant` or `plain`, got {mode!r}", SCHEMA_HINT, path,
                   at("newlib"), "newlib")
    if mode == "reentrant" and not (returns.is_signed_integer or returns.is_pointer):
        raise _err(f"a reentrant wrapper returns -1 (or NULL) and sets errno, which needs a signed "
                   f"integer or pointer return type; {name} returns {returns.newlib()}",
                   "use `newlib: plain`", path, at("newlib"), "newlib")

    header = item["header"]
    if header == "new":
        headers: tuple[str, ...] = ()
    else:
        hs = [header] if isinstance(header, str) else header
        if not isinstance(hs, list) or not hs or not all(isinstance(h, str) and HEADER_RE.match(h) for h in hs):
            raise _err(f"`header` must be `new` or the standard header(s) declaring {name}, got {header!r}",
                       "write `header: new` (creates libc/include/<name>.h) or e.g. `header: stdio.h`",
                       path, at("header"), "header")
        headers = tuple(hs)

    number = item.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or
                               not 0 <= number < 4096):
        raise _err(f"`number` must be a whole number 0..4095, got {number!r}", "or leave it out",
                   path, at("number"), "number")
    doc = item.get("doc", "") or ""
    if not isinstance(doc, str) or "*/" in doc or "\n" in doc.strip():
        raise _err("`doc` must be a one-line string without `*/`", SCHEMA_HINT, path, at("doc"), "doc")
    return Entry(name=name, returns=returns, params=params, newlib=mode, header=headers, stub=stub,
                 body=body, includes=includes, number=number, doc=doc.strip(),
                 line=getattr(item, "line", line or 0))


def load_table(path: Path | str, *, known_kernel: Mapping[str, str] | None = None,
               known_newlib: Iterable[str] | None = None) -> Table:
    """Load and validate the table at ``path`` (a missing file is an error)."""
    path = Path(path)
    if not path.exists():
        raise SyscallError(f"the syscall table {path} does not exist",
                           "create it with `syscalls: []` (see syscalls/README.md)", file=str(path))
    return table_from_data(load_yaml(path, SyscallError), path, known_kernel=known_kernel,
                           known_newlib=known_newlib)


def loads_table(text: str, path: Path | str, *, known_kernel: Mapping[str, str] | None = None,
                known_newlib: Iterable[str] | None = None) -> Table:
    """Like :func:`load_table` for text that is not (yet) on disk."""
    return table_from_data(loads_yaml(text, path, SyscallError), path, known_kernel=known_kernel,
                           known_newlib=known_newlib)


def digest(table: Table, side: str) -> str:
    """sha256 hex of what reaches ``side`` ("kernel" or "newlib"); see the module docstring."""
    if side not in ("kernel", "newlib"):
        raise ValueError(f"side must be 'kernel' or 'newlib', not {side!r}")
    if not table.entries:
        return EMPTY_DIGEST
    data = {"generator": GENERATOR_VERSIONS[side], "side": side,
            "entries": [e.kernel_data() if side == "kernel" else e.newlib_data() for e in table.entries]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def entry_to_yaml(entry: Entry) -> str:
    """The YAML block of one entry (as `add` appends it), starting with `  - name:`."""
    def q(text: str) -> str:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ *\[\]]*", text) and \
                text.lower() not in ("null", "true", "false", "yes", "no", "on", "off", "y", "n"):
            return text  # a plain scalar reads best: `returns: int`, `- const char *path`
        return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar

    lines = [f"  - name: {entry.name}"]
    if entry.doc:
        lines.append(f"    doc: {q(entry.doc)}")
    lines.append(f"    returns: {q(entry.returns.newlib())}")
    if entry.params:
        lines.append("    params:")
        lines.extend(f"      - {q(p.newlib())}" for p in entry.params)
    else:
        lines.append("    params: []")
    lines.append("    kernel:")
    if entry.body is not None:
        lines.append("      body: |")
        lines.extend(("        " + ln).rstrip() for ln in entry.body.rstrip("\n").splitlines())
    else:
        stub = entry.stub or ""
        lines.append("      stub: " + ("null" if stub == "" else (stub if re.fullmatch(r"-?[0-9]+", stub) else q(stub))))
    if entry.includes:
        lines.append("      includes: [" + ", ".join(entry.includes) + "]")
    lines.append(f"    newlib: {entry.newlib}")
    lines.append("    header: " + ("new" if not entry.header else
                                    entry.header[0] if len(entry.header) == 1 else
                                    "[" + ", ".join(entry.header) + "]"))
    if entry.number is not None:
        lines.append(f"    number: {entry.number}")
    return "\n".join(lines) + "\n"
