"""One lookup helper for every registry (plain dicts of name -> row), and lazy imports of the
classes a row names, so that light modules never import torch or ray to validate a name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

from mtl.config_loader import unknown_key
from mtl.errors import MtlError

__all__ = ["UnknownNameError", "load_object", "lookup"]

T = TypeVar("T")


class UnknownNameError(MtlError, KeyError):
    """An unknown registry name; the message names where it was written and the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def lookup(registry: Mapping[str, T], name: str, *, where: str) -> T:
    """Return ``registry[name]`` or raise with the closest name and the valid ones listed.

    Args:
        registry: A plain dict of name -> row.
        name: The name the user wrote.
        where: Where it was written, e.g. ``"examples/en-de.yaml: weighting"``.

    Raises:
        UnknownNameError: ``name`` is not in the registry (or is not a name at all).
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        hint = unknown_key(str(name), sorted(registry), "").hint
        raise UnknownNameError(f"{where}: unknown {name!r}; {hint}") from None


def load_object(spec: str) -> Any:
    """The object a ``"package.module:Name"`` string names (imported now)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
