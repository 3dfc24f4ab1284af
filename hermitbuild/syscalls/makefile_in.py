"""Updating newlib's ``libc/sys/hermit/Makefile.in`` for a new syscall list without automake.

Contract: :func:`update` takes the current Makefile.in text, the source list of the Makefile.am
it was made from, the hand-written sources of ``lib_a_SOURCES`` (in Makefile.am order) and the
generated wrappers the table now asks for, and returns the Makefile.in automake 1.11
(``--cygnus``) would write for the new Makefile.am, or ``None`` when it cannot be sure, in
which case the caller runs automake itself.  It is sure only when the file has exactly the
shape automake gives it:

- ``lib_a_SOURCES`` lists exactly the previous Makefile.am's sources: the hand-written ones
  followed by the previously generated ones (``.c`` files only);
- ``am_lib_a_OBJECTS`` is exactly what automake's line wrapping makes of that list, and,
  when generated sources were listed, so is ``lib_a_SOURCES`` (an appended variable is
  re-wrapped by automake; a plain one is kept as written);
- every previously generated source has exactly the two compile rules automake writes
  for a ``.c`` file of ``lib.a`` (``lib_a-X.o`` and ``lib_a-X.obj``), and the last
  hand-written source has its ``.obj`` rule, after which new rules go.

Only what a source list changes is rewritten: the two variables and the generated
sources' compile rules; every other byte stays.  An empty new list (the table's last call
removed) returns ``None``: automake writes the plain variable back as Makefile.am has it.
The wrapping is automake 1.11's ``Automake::Wrap::makefile_wrap`` (72 columns, a tab
counts 8, continuation lines start with a tab).  tests/test_syscalls_automake.py compares
the result with real automake-1.11 output on the fixture tree and, opt-in, on the real
newlib tree; that is what keeps this module honest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_RULES = (
    "\n"
    "lib_a-{s}.o: {s}.c\n"
    "\t$(CC) $(DEFS) $(DEFAULT_INCLUDES) $(INCLUDES) $(AM_CPPFLAGS) $(CPPFLAGS) $(lib_a_CFLAGS) "
    "$(CFLAGS) -c -o lib_a-{s}.o `test -f '{s}.c' || echo '$(srcdir)/'`{s}.c\n"
    "\n"
    "lib_a-{s}.obj: {s}.c\n"
    "\t$(CC) $(DEFS) $(DEFAULT_INCLUDES) $(INCLUDES) $(AM_CPPFLAGS) $(CPPFLAGS) $(lib_a_CFLAGS) "
    "$(CFLAGS) -c -o lib_a-{s}.obj `if test -f '{s}.c'; then $(CYGPATH_W) '{s}.c'; "
    "else $(CYGPATH_W) '$(srcdir)/{s}.c'; fi`\n"
)


def _tab_length(text: str) -> int:
    return len(text) + 7 * text.count("\t")


def makefile_wrap(head: str, fill: str, values: Sequence[str]) -> str:
    """automake 1.11's ``makefile_wrap``: ``head`` then ``values``, lines of at most 72
    columns joined by `` \\``+newline+``fill``; ``\\n``-terminated."""
    if not values:
        return head + "\n"
    if not head[-1:].isspace():
        head += " "
    eol, max_len = " \\", 72
    result, column = head, _tab_length(head)
    fill_len, eol_len = _tab_length(fill), _tab_length(eol)
    not_first = False
    for value in values:
        length = _tab_length(value)
        if (column + length + eol_len + 1 > max_len
                and (not_first or fill_len + length + eol_len + 1 <= max_len)):
            result += eol + "\n" + fill
            column = fill_len
        elif not_first:
            if not result[-1:].isspace():
                value = " " + value
            length += 1
        result += value
        column += length
        not_first = True
    return result + "\n"


def _block(text: str, name: str) -> tuple[int, int] | None:
    """(start, end) offsets of the one ``name =`` definition with its continuation lines."""
    found = [m.start() for m in re.finditer(rf"^{re.escape(name)} =", text, re.M)]
    if len(found) != 1:
        return None
    start = end = found[0]
    while True:
        nl = text.find("\n", end)
        if nl < 0:
            return None
        line = text[end:nl]
        end = nl + 1
        if not line.endswith("\\"):
            return start, end


def _stem(source: str) -> str:
    return source.rsplit(".", 1)[0]


def _objects(sources: Sequence[str]) -> str:
    return makefile_wrap("am_lib_a_OBJECTS =", "\t", [f"lib_a-{_stem(s)}.$(OBJEXT)" for s in sources])


def _rule_end(text: str, source: str) -> int | None:
    """Offset just after the recipe of ``lib_a-<stem>.obj: <source>`` (one such rule)."""
    found = [m for m in re.finditer(rf"^lib_a-{re.escape(_stem(source))}\.obj: {re.escape(source)}\n",
                                    text, re.M)]
    if len(found) != 1:
        return None
    pos = found[0].end()
    while pos < len(text) and text[pos] == "\t":
        nl = text.find("\n", pos)
        if nl < 0:
            return None
        pos = nl + 1
    return pos


def update(text: str, previous: Sequence[str], hand: Sequence[str],
           generated: Sequence[str]) -> str | None:
    """The Makefile.in for ``hand`` + ``generated`` sources, or None (run automake); see the
    module docstring for when it is sure.  ``previous`` is the source list of the Makefile.am
    this Makefile.in was made from: the file must list exactly those."""
    if not generated or not hand or any(not g.endswith(".c") for g in generated):
        return None
    sources_at = _block(text, "lib_a_SOURCES")
    objects_at = _block(text, "am_lib_a_OBJECTS")
    if sources_at is None or objects_at is None or objects_at[1] > sources_at[0]:
        return None
    old_sources_text = text[sources_at[0]:sources_at[1]]
    listed = old_sources_text.split("=", 1)[1].replace("\\", " ").split()
    if listed != list(previous) or listed[:len(hand)] != list(hand):
        return None
    old_generated = listed[len(hand):]
    if any(not g.endswith(".c") for g in old_generated):
        return None
    if text[objects_at[0]:objects_at[1]] != _objects(listed):
        return None
    if old_generated and old_sources_text != makefile_wrap("lib_a_SOURCES =", "\t", listed):
        return None
    # the rules: drop the old generated ones, put the new ones where they were (after the
    # last hand-written source's rules, as automake orders them by source)
    rules = text[sources_at[1]:]
    insert_at = _rule_end(rules, hand[-1])
    if insert_at is None:
        return None
    old_rules = "".join(_RULES.format(s=_stem(g)) for g in old_generated)
    if rules[insert_at:insert_at + len(old_rules)] != old_rules:
        return None
    new_rules = "".join(_RULES.format(s=_stem(g)) for g in generated)
    rules = rules[:insert_at] + new_rules + rules[insert_at + len(old_rules):]
    new_sources = list(hand) + list(generated)
    return (text[:objects_at[0]] + _objects(new_sources) + text[objects_at[1]:sources_at[0]]
            + makefile_wrap("lib_a_SOURCES =", "\t", new_sources) + rules)
