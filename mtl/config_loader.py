"""A small public loader: YAML -> frozen dataclasses, every problem of a file collected at once.

Generic: it knows type hints (scalars, ``X | None``, ``Literal``, tuples, dicts, nested
dataclasses) and one field marker, ``variants`` (a mapping whose keys pick the dataclass of
their values: the enabled tasks). Domain checks live in the dataclasses' ``__post_init__``,
which raise :class:`Invalid` with :class:`Problem` rows; the loader puts the key path in front.

Callers that check configs of their own (a search space) use the same pieces: :class:`Problem`
(``path``, ``message``, ``hint``), :func:`build`, :func:`unknown_key` and
:class:`ConfigError`'s ``problems``. Importing this module costs nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from mtl.errors import MtlError

__all__ = ["ConfigError", "Invalid", "Problem", "build", "check", "get_dotted", "set_dotted", "to_dict",
           "unknown_key", "variants"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config, at a dotted key path."""

    path: str
    """Dotted key, e.g. ``train.lr``, ``tasks.da.weight``, ``data.pairs[1]`` ("" for the whole file)."""
    message: str
    """What is wrong, with the value seen: ``must be > 0, got -1``."""
    hint: str | None = None
    """What would be right: ``did you mean 'lr'? valid: seed, lr, ...``."""
    reads: tuple[str, ...] = ()
    """Other keys a cross-field check read; if one of them failed already, this problem is not news."""
    kind: Literal["value", "unknown", "override"] = "value"
    """value: a value the schema rejects; unknown: a key or name it does not know; override: a
    dotted override that could not be set."""

    def line(self, source: str) -> str:
        """``source: path: message; hint`` (the path and hint left out when empty)."""
        where = f"{source}: {self.path}" if self.path else source
        return f"{where}: {self.message}" + (f"; {self.hint}" if self.hint else "")

    def under(self, prefix: str) -> Problem:
        """The same problem with ``prefix.`` in front of its path (and of the keys it read)."""
        if not prefix:
            return self
        def join(key: str) -> str:
            return f"{prefix}.{key}" if key else prefix
        return dataclasses.replace(self, path=join(self.path), reads=tuple(join(r) for r in self.reads))


class ConfigError(MtlError, ValueError):
    """Every problem of one config source, each a line ``source: dotted.key: message``.

    Args:
        problems: The problems, in the order found.
        source: The file (or e.g. ``spaces/x.yaml: base``) every line starts with.
    """

    def __init__(self, problems: Sequence[Problem], *, source: str) -> None:
        self.problems = list(problems)
        self.source = source
        self.errors = [p.line(source) for p in self.problems]
        super().__init__("\n".join(self.errors))


class Invalid(ValueError):
    """Raised by a dataclass's ``__post_init__``: its problems, paths relative to the object."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.line("") for p in self.problems))


def check(problems: Sequence[Problem]) -> None:
    """Raise :class:`Invalid` when there is any problem (for ``__post_init__``)."""
    if problems:
        raise Invalid(problems)


def unknown_key(key: str, valid: Iterable[str], what: str, *, path: str | None = None) -> Problem:
    """An unknown key (or name), the closest valid one suggested and the valid ones listed.

    Args:
        key: What the user wrote.
        valid: The valid keys, in the order to list them.
        what: What it is a key of, e.g. ``train`` or ``weighting 'dwa'``.
        path: The problem's path (default: ``key``).
    """
    valid = [str(v) for v in valid]
    close = difflib.get_close_matches(str(key), valid, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    where = path if path is not None else str(key)
    if not valid:
        return Problem(where, f"unknown key for {what} (it takes no options)", kind="unknown")
    return Problem(where, f"unknown key for {what}", f"{suggestion}valid: {', '.join(valid)}", kind="unknown")


def variants(table: Callable[[], Mapping[str, type]], what: str, *, tag: str | None = None) -> dict[str, Any]:
    """Field metadata: a mapping whose values are dataclasses looked up in ``table()``: by their
    key (the enabled tasks: name -> options class), or with ``tag`` by the value of that field of
    theirs (datasets: ``{source: table, ...}``). ``what`` names an entry in messages."""
    return {"variants": table, "what": what, "tag": tag}


# ---------------------------------------------------------------------------------------


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``key="a.b"``, creating mappings on the way.

    Raises:
        ValueError: A key on the way holds something other than a mapping.
    """
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ValueError(f"{'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


def get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``.

    Raises:
        KeyError: A part is missing; its argument is an :func:`unknown_key` problem's line.
    """
    node: Any = tree
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            valid = list(node) if isinstance(node, Mapping) else []
            problem = unknown_key(part, valid, ".".join(parts[:i]) or "the config")
            raise KeyError(problem.message + (f"; {problem.hint}" if problem.hint else ""))
        node = node[part]
    return node


def to_dict(obj: Any) -> Any:
    """A config as plain YAML-ready data (tuples as lists), complete with defaults."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deepcopy_plain(value: Any) -> Any:
    """A copy of parsed YAML (mappings become dicts), so overrides never touch the caller's data."""
    if isinstance(value, Mapping):
        return {k: deepcopy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deepcopy_plain(v) for v in value]
    return value


def build(cls: type, raw: Any, *, source: str, path: str = "") -> Any:
    """Build dataclass ``cls`` from parsed YAML, or raise every problem at once.

    Args:
        cls: The dataclass.
        raw: The parsed mapping.
        source: The file, named first in each problem's line.
        path: The key ``raw`` sits at in the file ("" for the top level).

    Raises:
        ConfigError: Unknown keys, wrong types, and what the classes' checks reject.
    """
    problems: list[Problem] = []
    built = _build(cls, raw, path, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return built


_BAD = object()


def _build(cls: type, raw: Any, path: str, problems: list[Problem]) -> Any:
    """Build ``cls`` from ``raw``; append problems rather than raising; _BAD when any."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, f"must be a mapping, got {raw!r}"))
        return _BAD
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    failed: set[str] = set()
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(unknown_key(str(key), fields, path or "the config", path=key_path))
            failed.add(str(key))
            continue
        table = fields[key].metadata.get("variants")
        if table is not None:
            meta = fields[key].metadata
            converted = _build_variants(table(), meta["what"], meta["tag"], value, key_path, problems)
        else:
            converted = _convert(hints[key], value, key_path, problems)
        if converted is _BAD:
            failed.add(key)
        else:
            kwargs[key] = converted
    try:
        built = cls(**kwargs)
    except Invalid as e:
        # Cross-field checks still run when a field failed (it fell back to its default),
        # but only their problems about fields that were read correctly are reported.
        for problem in e.problems:
            top = re.match(r"[^.\[]+", problem.path)
            if not {top.group(0) if top else "", *problem.reads} & failed:
                problems.append(problem.under(path))
        return _BAD
    return _BAD if failed else built


def _build_variants(table: Mapping[str, type], what: str, tag: str | None, raw: Any, path: str,
                    problems: list[Problem]) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(Problem(path, f"must be a mapping of {what} name -> options, got {raw!r}"))
        return _BAD
    out: dict[str, Any] = {}
    bad = False
    for name, options in raw.items():
        kind = name if tag is None else (options.get(tag) if isinstance(options, Mapping) else None)
        if not isinstance(kind, str) or kind not in table:
            where = f"{path}.{name}" if tag is None else f"{path}.{name}.{tag}"
            problem = unknown_key(str(kind), table, what, path=where)
            message = f"unknown {what} {name!r}" if tag is None else \
                f"unknown {kind!r}" if kind is not None else f"missing, expected the {what}'s {tag}"
            problems.append(dataclasses.replace(problem, message=message))
            bad = True
            continue
        built = _build(table[kind], options, f"{path}.{name}", problems)
        if built is _BAD:
            bad = True
        else:
            out[str(name)] = built
    return _BAD if bad else out


def _convert(hint: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    """Check ``value`` against a type hint; the converted value, or _BAD after a problem."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, problems)  # type: ignore[arg-type]
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        problems.append(Problem(path, f"must be one of {', '.join(map(str, args))}, got {value!r}"))
        return _BAD
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            problems.append(Problem(path, f"must be a list, got {value!r}"))
            return _BAD
        out = [_convert(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(items)]
        return _BAD if any(v is _BAD for v in out) else tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(Problem(path, f"must be a mapping, got {value!r}"))
            return _BAD
        converted = {str(k): _convert(args[1], v, f"{path}.{k}", problems) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in converted.values()) else converted
    if hint is Any:
        return value
    scalar = _scalar(hint, value)
    if scalar is not _BAD:
        return scalar
    if hint is float and isinstance(_number(value), float):
        problems.append(Problem(path, f"must be a finite number, got {value!r}"))
    else:
        problems.append(Problem(path, f"must be {getattr(hint, '__name__', hint)}, got {value!r}"))
    return _BAD


def _number(value: Any) -> float | None:
    """A number from YAML (which reads ``1e-3`` without a dot as a string), finite or not; None if none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _scalar(hint: Any, value: Any) -> Any:
    if hint is bool:
        return value if isinstance(value, bool) else _BAD
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return int(value) if isinstance(value, float) and value.is_integer() else _BAD
    if hint is float:
        number = _number(value)
        return number if number is not None and math.isfinite(number) else _BAD
    if hint is str:
        return value if isinstance(value, str) else _BAD
    raise TypeError(f"the config loader cannot check type {hint!r}")  # a schema bug, not a user's
