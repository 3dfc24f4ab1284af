"""The cheap check of a syscall body's C text: brackets, literals and comments balance.

Contract: :func:`balance_problem` (pure; every table load runs it) returns why a body's
brackets do not balance outside string and character literals and comments, or which
literal or comment is not closed, with the line within the body; None when fine.  A body
that closes the function early (``return 1;}``) is caught here.
"""

from __future__ import annotations

_PAIRS = {")": "(", "]": "[", "}": "{"}


def balance_problem(body: str) -> str | None:
    """Why ``body``'s brackets, literals or comments do not balance; None when they do."""
    stack: list[tuple[str, int]] = []
    i, line, n = 0, 1, len(body)
    while i < n:
        c = body[i]
        if c == "\n":
            line += 1
        elif body.startswith("//", i):
            j = body.find("\n", i)
            i = n if j < 0 else j
            continue
        elif body.startswith("/*", i):
            j = body.find("*/", i + 2)
            if j < 0:
                return f"a comment opened at line {line} is never closed (*/)"
            line += body.count("\n", i, j)
            i = j + 2
            continue
        elif c in "\"'":
            start = line
            i += 1
            while i < n and body[i] != c:
                if body[i] == "\\":
                    i += 1
                elif body[i] == "\n":
                    return f"the {'string' if c == chr(34) else 'character'} literal at line {start} " \
                           "is not closed on its line"
                i += 1
            if i >= n:
                return f"the literal opened at line {start} is never closed ({c})"
        elif c in "([{":
            stack.append((c, line))
        elif c in ")]}":
            if not stack or stack[-1][0] != _PAIRS[c]:
                what = "closes the function early" if c == "}" and not stack else "has no matching opener"
                return f"'{c}' at line {line} {what}"
            stack.pop()
        i += 1
    if stack:
        opener, where = stack[-1]
        return f"'{opener}' opened at line {where} is never closed"
    return None
