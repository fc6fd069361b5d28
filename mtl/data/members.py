"""The files of one MLQE-PE-like bundle, from a gzip tarball or from the same folder extracted.

Members are found by the end (``*.tsv``, ``*.src``) or start (``word_probas.*``) of their file
name, never by folder: the folder inside a tarball differs between splits and releases.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

from mtl.data.parse import DataError, Where

__all__ = ["by_prefix", "by_suffix", "exists"]


def exists(bundle: Path) -> bool:
    """Whether a bundle is there: the tarball ``<x>.tar.gz``, or its extracted folder ``<x>/``."""
    return bundle.is_file() or _folder(bundle).is_dir()


def by_suffix(bundle: Path, suffixes: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``suffix -> (member name, UTF-8 text)`` for the members whose name ends in ``.suffix``."""
    def key(name: str) -> str | None:
        _, dot, suffix = name.rsplit("/", 1)[-1].rpartition(".")
        return suffix if dot and suffix in suffixes else None
    return _read(bundle, key, lambda k: f"end in '.{k}'")


def by_prefix(bundle: Path, prefixes: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``prefix -> (member name, UTF-8 text)`` for the members whose file name starts with a prefix."""
    def key(name: str) -> str | None:
        base = name.rsplit("/", 1)[-1]
        return next((p for p in prefixes if base.startswith(p)), None)
    return _read(bundle, key, lambda k: f"start with '{k}'")


def _folder(bundle: Path) -> Path:
    return bundle.with_name(bundle.name.removesuffix(".tar.gz"))


def _read(bundle: Path, key: Callable[[str], str | None], rule: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    if not bundle.is_file() and _folder(bundle).is_dir():
        return _read_folder(bundle, _folder(bundle), key, rule)
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            found: dict[str, tarfile.TarInfo] = {}
            for info in tar.getmembers():
                k = key(info.name) if info.isfile() else None
                if k is None:
                    continue
                if k in found:
                    raise DataError(f"{bundle}: {found[k].name}, {info.name}: both {rule(k)}, expected exactly one "
                                    "such member")
                found[k] = info
            return {k: (m.name, _decode(bundle, m.name, _member(tar, m))) for k, m in found.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{bundle}: cannot read it ({e}), expected a gzip-compressed tar archive") from e


def _read_folder(bundle: Path, folder: Path, key: Callable[[str], str | None],
                 rule: Callable[[str], str]) -> dict[str, tuple[str, str]]:
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder.parent).as_posix()
        k = key(name)
        if k is None:
            continue
        if k in found:
            raise DataError(f"{folder}: {found[k].name}, {path.name}: both {rule(k)}, expected exactly one such file")
        found[k] = path
    try:
        return {k: (p.relative_to(folder.parent).as_posix(), _decode(folder, p.name, p.read_bytes()))
                for k, p in found.items()}
    except OSError as e:
        raise DataError(f"{folder}: cannot read {e.filename}: {e.strerror}") from e


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    if f is None:  # pragma: no cover - only regular files are passed in
        raise tarfile.TarError(f"{info.name} is not a regular file")
    return f.read()


def _decode(path: Path, member: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise Where(path, member).error(line, f"invalid UTF-8 ({e.reason})", "UTF-8 text") from e
