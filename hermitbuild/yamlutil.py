"""YAML loading that remembers line numbers, for errors that name the line.

Contract: :func:`load_yaml` parses a file with PyYAML's safe loader and returns
plain Python data in which every mapping is a :class:`LineDict` (a ``dict``
with ``.line`` = 1-based line of the mapping and ``.key_lines`` = key -> line)
and every sequence a :class:`LineList` (with ``.line`` and ``.item_lines``).
Malformed YAML raises the caller-chosen error class (a subclass of
``HermitBuildError`` taking ``why, fix, file=, line=``) with the parser's line.
The file is read with :func:`hermitbuild.fsutil.read_text` (a byte that is not UTF-8 names its line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from .fsutil import read_text


class LineDict(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        try:
            return self.item_lines[index]
        except IndexError:
            return self.line


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when PyYAML has it
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def loads_yaml(text: str, path: Path | str, error: Callable[..., Exception]) -> Any:
    """Parse YAML text (named ``path`` in errors)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "quoted scalar" in (exc.context or ""):
            mark = exc.context_mark  # an unclosed quote: where it opened, not where the file ended
            exc.problem = f"a quoted string is never closed ({exc.problem})"
        line = mark.line + 1 if mark else None
        raise error(f"malformed YAML: {exc.problem or exc}",
                    "fix the YAML syntax at that line (indentation, quotes, colons)",
                    file=str(path), line=line) from None
    except yaml.YAMLError as exc:
        raise error(f"malformed YAML: {exc}", "fix the YAML syntax", file=str(path)) from None


def load_yaml(path: Path | str, error: Callable[..., Exception]) -> Any:
    """Parse the YAML file at ``path``; see the module docstring."""
    return loads_yaml(read_text(path, error), path, error)
