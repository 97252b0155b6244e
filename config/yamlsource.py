"""YAML with line numbers: plain data plus a key path -> line index, and ``${ENV}`` expansion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from config.errors import ConfigProblem, Path_

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(slots=True)
class YamlDocument:
    """A parsed YAML file: its data, where each key path sits, and what went wrong."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """Line of the nearest enclosing key that exists (missing keys point at the parent)."""
        probe = tuple(path)
        while probe:
            line = self.lines.get(probe)
            if line is not None:
                return line
            probe = probe[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Path_, message: str) -> ConfigProblem:
        found = ConfigProblem(self.file, self.line_of(path), tuple(path), message)
        self.problems.append(found)
        return found


class _Loader(yaml.SafeLoader):
    """A private subclass so nothing we do leaks into PyYAML's global loader."""


def parse_yaml(text: str, file: str, *, prefix: Path_ = ()) -> YamlDocument:
    """Parse ``text``; syntax errors and duplicate keys become problems, never exceptions."""
    doc = YamlDocument(file=file, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.lines[prefix] = node.start_mark.line + 1
            doc.data = _build(loader, node, prefix, doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = exc.problem or exc.context or "unreadable YAML"
        doc.problems.append(ConfigProblem(file, line, prefix, f"invalid YAML: {reason}"))
        doc.data = None
    finally:
        loader.dispose()
    return doc


def _build(loader: _Loader, node: yaml.Node, path: Path_, doc: YamlDocument) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<) first
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                key = str(key)
            child = (*path, key if isinstance(key, str) else str(key))
            line = key_node.start_mark.line + 1
            if key in result:
                doc.problems.append(
                    ConfigProblem(
                        doc.file, line, child, f"duplicate key (first at line {doc.lines[child]})"
                    )
                )
                continue
            doc.lines[child] = line
            result[key] = _build(loader, value_node, child, doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            child = (*path, index)
            doc.lines[child] = item_node.start_mark.line + 1
            items.append(_build(loader, item_node, child, doc))
        return items
    return loader.construct_object(node, deep=True)


def expand_env(doc: YamlDocument, environ: Mapping[str, str]) -> None:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value, in place.

    A reference to an unset variable is a problem at its key path; the string is left
    as written so later checks do not report the same key twice.
    """
    doc.data = _expand(doc.data, (), doc, environ)


def _expand(value: Any, path: Path_, doc: YamlDocument, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), doc, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), doc, environ) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing.append(name)
        return match.group(0)

    expanded = _ENV_REF.sub(substitute, value)
    for name in missing:
        doc.problem(path, f"environment variable {name} is not set")
    return value if missing else expanded
