"""The run directory: what a training run writes, under which names. The one owner of the layout.

The trainer writes it, a search's trials add two files to it, the reports read it::

    config.yaml        the resolved trainer config (`python -m mtl train --config` retrains it)
    checkpoint/        the best checkpoint (mtl.model.multitask.MultiTaskModel.from_pretrained)
    last/              the state to resume from (weights in safetensors, the rest in JSON)
    metrics.json       best step, objective and {pair: {task: {metric: value}}}
    history.jsonl      per step the losses and weights in force; per evaluation the metrics
    predictions/<pair>.<split>/   the best checkpoint's predictions, as the WMT20 scorers read them:
        da/predictions.txt, hter/predictions.txt      sentence scores (sent_evaluate.py)
        word/predictions_{mt,gaps,src}.txt            word tags (word_evaluate.py reads the folder)
        post_edit/predictions.txt                     one post-edit per line
    error.json         (a search's trial) why the trial raised: reason and traceback
    worker.json        (a search's trial) where it ran and the memory its process held
    ensemble.json      (an ensemble folder, instead of checkpoint/) its members and weights

An ensemble folder written by finalize holds ensemble.json, metrics.json and predictions/.

A per_pair trial of a search keeps one run directory per pair below its own: ``<run>/<pair>/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtl.files import read_jsonl

__all__ = ["WORD_LEVEL", "RunDir", "prediction_file"]


WORD_LEVEL = "word"
"""The folder of the word-level files: the WMT20 word scorer reads MT, gap and source tags from one."""


def prediction_file(folder: str, part: str = "") -> str:
    """A submission file's path in a predictions folder: ``<folder>/predictions[_<part>].txt``
    (a sentence task's folder is its name; the word-level files share `WORD_LEVEL`)."""
    return f"{folder}/predictions{'_' + part if part else ''}.txt"


class RunDir:
    """The files of one run directory (a value: two of the same folder are equal)."""

    __slots__ = ("_path",)

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)

    def __repr__(self) -> str:
        return f"RunDir({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def last(self) -> Path:
        return self.path / "last"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def error(self) -> Path:
        return self.path / "error.json"

    @property
    def worker(self) -> Path:
        return self.path / "worker.json"

    @property
    def ensemble(self) -> Path:
        """(an ensemble folder) its members and their weights: `mtl.ensemble`."""
        return self.path / "ensemble.json"

    def predictions(self, pair: str, split: str) -> Path:
        """The folder of the prediction files of one pair and split."""
        return self.path / "predictions" / f"{pair}.{split}"

    def prediction(self, pair: str, split: str, task: str) -> Path:
        """A sentence task's submission file of one pair and split (``<task>.txt`` in a run
        written before the WMT20 layout, when that is what the folder holds)."""
        folder = self.predictions(pair, split)
        path, legacy = folder / prediction_file(task), folder / f"{task}.txt"
        return legacy if legacy.is_file() and not path.exists() else path

    def pair(self, pair: str) -> RunDir:
        """The run directory of one pair of a per_pair trial."""
        return RunDir(self.path / pair)

    def history_records(self) -> list[dict[str, Any]]:
        """The lines of history.jsonl, up to a line cut by a crash ([] when there is none)."""
        return read_jsonl(self.history)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """``metrics.json``, ``error.json`` or ``worker.json`` as written (None: absent or cut)."""
        path = self.path / name
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None
