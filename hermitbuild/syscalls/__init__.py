"""System calls from a table: model, catalog, emitters, tree editing, Makefile.in, automake, CLI.

Public API (other modules call exactly these):

- ``load_table(path) -> Table``: read and validate ``syscalls/table.yaml``.
- ``digest(table, side) -> str``: sha256 hex of what reaches ``"kernel"`` or
  ``"newlib"``; an empty table gives ``EMPTY_DIGEST``.
- ``generate_kernel(tree, table) -> list[Path]``: ``kernel/syscalls_generated.c`` and
  ``include/hermit/syscalls_generated.h`` (prototypes, ``__NR_`` numbers; included only by
  the generated .c, so a table change recompiles one kernel object).
- ``generate_newlib(tree, table, automake) -> list[Path]``: wrappers
  ``libc/sys/hermit/<name>.c``, a marked region in ``libc/sys/hermit/syscall.h``,
  ``libc/include/<name>.h`` where needed, a marked ``lib_a_SOURCES +=`` region in
  ``Makefile.am``, and Makefile.in edited as automake 1.11 writes it (:mod:`.makefile_in`);
  ``automake(libc/sys/hermit dir)`` runs only when that edit is not sure (``None``: the
  host's automake 1.11, see :mod:`.automake`).
- ``cli_main(argv, settings, *, trees=None, automake=None) -> int``: ``doit syscall``.

Both generators work on pristine and on already generated trees, are idempotent,
and are all-or-nothing.  Schema and examples: ``syscalls/README.md``.
"""

from __future__ import annotations

from .automake import host_automake
from .cli import cli_main, default_trees
from .model import EMPTY_DIGEST, Entry, Table, digest, load_table, parse_signature
from .tree import drift, generate_kernel, generate_newlib

__all__ = ["EMPTY_DIGEST", "Entry", "Table", "cli_main", "default_trees", "digest", "drift",
           "generate_kernel", "generate_newlib", "host_automake", "load_table", "parse_signature"]
