"""Where a run is, saved so that a resumed run continues exactly as if never stopped.

The state folder (a run's ``last/``) holds the tensors (weights, optimizer moments, the weighting
strategy's state, RNG states) in safetensors and everything else in JSON: loading it runs no
code, whoever wrote the folder. It is written whole or not at all.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl.errors import MtlError
from mtl.files import recover_dir, replace_dir, scratch, write_text

__all__ = ["StateError", "TrainState", "has_state", "load_state", "save_state"]

TENSORS = "state.safetensors"
META = "state.json"
LEGACY = "trainer_state.pt"  # before safetensors: a pickle, never loaded


class StateError(MtlError):
    """A state folder that cannot be resumed from (from an older version, or damaged)."""


@dataclass
class TrainState:
    """Where the loop is: all of it goes into the resumable state."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of the current epoch already consumed
    best_objective: float | None = None
    best_step: int | None = None
    best_metrics: dict | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


def has_state(where: Path) -> bool:
    """Whether ``where`` holds a state to resume from (an older version's too: loading it then says why not)."""
    recover_dir(where)
    return (where / META).is_file() or (where / LEGACY).is_file()


def save_state(where: Path, state: TrainState, *, model: torch.nn.Module, weighting: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> None:
    """Write the state folder (beside ``where``, then put in its place)."""
    from safetensors.torch import save_file

    blob = {
        "state": asdict(state),
        "model": model.state_dict(),
        "weighting": weighting.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    tensors: dict[str, torch.Tensor] = {}
    meta = _encode(blob, tensors)
    tmp = scratch(where)
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp / TENSORS))
    write_text(tmp / META, json.dumps(meta))
    replace_dir(tmp, where)


def load_state(where: Path, *, model: torch.nn.Module, weighting: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, scaler: Any) -> TrainState:
    """Restore everything :func:`save_state` wrote; returns where the loop was.

    Raises:
        StateError: The folder is from an older version (a pickle) or damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (where / META).is_file() and (where / LEGACY).is_file():
        raise StateError(f"{where / LEGACY}: resume state of an older mtlsearch (a pickle, which is never "
                         f"loaded: it could run code); start the run over with --overwrite")
    try:
        tensors = load_file(str(where / TENSORS), device="cpu")
        blob = _decode(json.loads((where / META).read_text(encoding="utf-8")), tensors)
        model.load_state_dict(blob["model"])
        weighting.load_state_dict(blob["weighting"])
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
    except (OSError, SafetensorError, json.JSONDecodeError, KeyError, RuntimeError, ValueError) as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise StateError(f"{where}: cannot resume from it ({why}); start the run over with --overwrite") from e
    if scaler and blob["scaler"]:
        scaler.load_state_dict(blob["scaler"])
    rng = blob["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return TrainState(**blob["state"])


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready data with each tensor replaced by a reference into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().to("cpu", copy=True).contiguous()  # a copy: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"resume state: cannot store a {type(obj).__name__}")  # a new kind of state: extend _encode


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        if "__items__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj
