"""Reading a YAML file strictly: UTF-8, valid YAML, and no key written twice in one mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtl.config_loader import ConfigError, Problem

__all__ = ["read_yaml"]


class _DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # an unhashable key: the constructor below reports it
            continue
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice (first on line {first}); keep one", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: str | Path, *, what: str = "a YAML file") -> Any:
    """Parse a YAML file strictly: UTF-8, and no key written twice in one mapping.

    Args:
        path: The file.
        what: What it should be, for messages (``a trainer config``).

    Returns:
        The parsed document (None for an empty one).

    Raises:
        ConfigError: The file cannot be read, is not UTF-8, is not valid YAML, or repeats a key;
            one line naming the file (and the line where YAML found the problem).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError as e:
        raise ConfigError([Problem("", f"is a directory, expected {what}")], source=str(path)) from e
    except FileNotFoundError as e:
        raise ConfigError([Problem("", "no such file")], source=str(path)) from e
    except OSError as e:
        raise ConfigError([Problem("", f"cannot read: {e.strerror}")], source=str(path)) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError([Problem(f"line {line}", f"not UTF-8 text ({e.reason})", f"save {what} as UTF-8")],
                          source=str(path)) from e
    try:
        return yaml.load(text, Loader=_DuplicateKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError([Problem("", f"not valid YAML: {_yaml_message(e)}")], source=str(path)) from e


def _yaml_message(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (f"{context}: {problem}" if context else str(problem))
