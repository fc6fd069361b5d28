"""One lookup helper for every registry (plain dicts of name -> entry)."""

from __future__ import annotations

from typing import Mapping, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message names where it was written and the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def lookup(registry: Mapping[str, T], name: str, *, where: str) -> T:
    """Return ``registry[name]`` or raise with the valid names listed.

    Args:
        registry: A plain dict of name -> entry.
        name: The name the user wrote.
        where: Where it was written, e.g. ``"examples/en-de.yaml: weighting"``.

    Raises:
        UnknownNameError: ``name`` is not in the registry.
    """
    try:
        return registry[name]
    except KeyError:
        valid = ", ".join(sorted(registry))
        raise UnknownNameError(f"{where}: unknown {name!r}; valid: {valid}") from None
