"""Score or predict with a saved run: what `mtl evaluate` and `mtl predict` call.

`predict_stream` takes segments from any iterator (a table read row by row, line-aligned text
files), tokenizes and predicts them a chunk at a time and appends each chunk's rows to the
output: memory does not grow with the input. The output is written beside its final name and
put in place at the end, so a crash or a bad row leaves no half file under that name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from mtl.catalogue import FEATURES
from mtl.data.dataset import PairSplit, collate, default_cache_dir, encode_records, eval_order, load_pair_split
from mtl.device import pick_device
from mtl.ensemble import Ensemble, as_ensemble
from mtl.evaluate import Metrics, objective, predict_split, score_split, write_predictions
from mtl.files import finite, replace_with
from mtl.model.multitask import MultiTaskModel

__all__ = ["OUTPUT_FILES", "dev_outputs", "ensemble_scores", "glassbox_inputs", "predict_stream",
           "predict_to_files", "score_run"]

log = logging.getLogger(__name__)

Format = Literal["tsv", "jsonl", "wmt20"]
OUTPUT_FILES = {"tsv": "predictions.tsv", "jsonl": "predictions.jsonl"}
"""Format -> the file `predict_stream` writes in the output folder (wmt20: the WMT20 layout of
`mtl.rundir`)."""
CHUNK = 2048
"""Segments tokenized and predicted at a time."""


def _split(model: MultiTaskModel, pair: str, split: str, max_samples: int | None, root: str | None) -> PairSplit:
    cfg = model.cfg
    return load_pair_split(cfg.data.source(pair, root=root), pair, split, tokenizer=model.tokenizer,
                           backbone=model.encoder.backbone, max_length=cfg.model.max_length,
                           cache_dir=default_cache_dir(cfg.data.cache_dir), pe_max_length=cfg.target_tokens,
                           max_samples=max_samples, features=cfg.features)


Run = MultiTaskModel | Ensemble
"""A loaded run, or an ensemble of runs (`mtl.ensemble.load_run`)."""


def dev_outputs(ens: Ensemble, pair: str, split: str, *, max_samples: int | None, root: str | None,
                device: Any) -> tuple[PairSplit, list[list[dict[str, Any]]]]:
    """One dataset's split as the first member encodes it, and every member's per-segment outputs."""
    splits = [_split(m, pair, split, max_samples, root) for m in ens.members]
    return splits[0], [_outputs(m, s, device) for m, s in zip(ens.members, splits)]


def score_run(model: Run, *, split: str, pairs: list[str], root: str | None = None,
              max_samples: int | None = None, device: str | None = None) -> dict:
    """{"objective": v, "metrics": {pair: {task: {metric: value}}}} of a loaded run or ensemble,
    on the first `max_samples` segments of each dataset (None: all), on ``device`` (default:
    the run's ``train.device``); ``root`` reads the MLQE-PE pairs from there instead of the run's root."""
    ens = as_ensemble(model)
    where = pick_device(device or ens.cfg.train.device)
    ens.to(where)
    metrics: Metrics = {}
    for pair in pairs:
        if len(ens.members) == 1:  # every head, the auxiliary ones too, from its own predictions
            member = ens.members[0]
            data = _split(member, pair, split, max_samples, root)
            preds = predict_split(member, data, batch_size=member.cfg.train.eval_batch_size, device=where,
                                  autocast=contextlib.nullcontext)
            metrics[pair] = score_split(data, preds, member.task_heads)
            continue
        data, rows = dev_outputs(ens, pair, split, max_samples=max_samples, root=root, device=where)
        metrics[pair] = ensemble_scores(ens, data, ens.combine(rows))
    return {"objective": objective(metrics, ens.cfg.objective_terms()), "metrics": metrics}


def ensemble_scores(ens: Ensemble, data: PairSplit, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each head's metrics of combined outputs."""
    heads = ens.heads
    return score_split(data, {task: head.from_outputs(rows) for task, head in heads.items()}, heads)


def predict_to_files(model: MultiTaskModel, *, pair: str, split: str, out: str | Path, root: str | None = None,
                     method: str = "mtl", max_samples: int | None = None, device: str | None = None) -> list[Path]:
    """Write the WMT20-format prediction files of every task for one dataset and split."""
    where = pick_device(device or model.cfg.train.device)
    model.to(where)
    data = _split(model, pair, split, max_samples, root)
    preds = predict_split(model, data, batch_size=model.cfg.train.eval_batch_size, device=where,
                          autocast=contextlib.nullcontext)
    return write_predictions(data, preds, out, model.task_heads, method=method)


def glassbox_inputs(model: Run) -> dict[str, list[str]]:
    """The NMT-system inputs a run's (or its members') glass-box features read -> those features:
    ``model_score`` (one score per segment) and ``nmt_logprobs`` (its tokens and their log-probs)."""
    names = [n for m in as_ensemble(model).members for n in m.cfg.features.names()]
    names = list(dict.fromkeys(names))
    needs = {"model_score": [n for n in names if not FEATURES[n].logprobs],
             "nmt_logprobs": [n for n in names if FEATURES[n].logprobs]}
    return {k: v for k, v in needs.items() if v}


def predict_stream(model: Run, records: Iterable[dict], *, out: str | Path, fmt: Format = "tsv",
                   method: str = "mtl", device: str | None = None, total: int | None = None,
                   chunk: int = CHUNK) -> tuple[list[Path], int]:
    """Predict segments a chunk at a time and write them to ``out``.

    Args:
        model: A loaded run, or an ensemble (each member encodes the chunk with its own
            tokenizer; the heads combine the members' outputs).
        records: Segments as the readers give them (``src``, ``mt`` word lists, ``index`` from 0,
            ``id``; ``nmt_tokens``/``nmt_logprobs`` and ``model_score`` when the features need them).
        out: The output folder.
        fmt: ``tsv`` / ``jsonl`` (one row per segment: ``id``, then each head's outputs) or
            ``wmt20`` (the WMT20 submission files).
        method: The method name of the WMT20 files.
        device: Default: the run's ``train.device``.
        total: The number of segments, for the progress bar (None: unknown).
        chunk: Segments per chunk.

    Returns:
        The files written, and the number of segments.

    Raises:
        DataError: A malformed segment (nothing is written under the final names).
    """
    ens = as_ensemble(model)
    where = pick_device(device or ens.cfg.train.device)
    ens.to(where)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, started = 0, time.monotonic()
    with contextlib.ExitStack() as stack:
        writer = _Writer(out, fmt, method, stack)
        bar = stack.enter_context(_progress(total))
        for part in _chunks(records, chunk):
            splits = [_encode(m, part) for m in ens.members]
            rows = ens.combine([_outputs(m, s, where) for m, s in zip(ens.members, splits)])
            writer.write(ens, splits[0], rows)
            n += len(part)
            bar.update(len(part))
        files = writer.close()
    seconds = time.monotonic() - started
    log.info("predicted %d segments in %.1f s (%.0f per second) on %s", n, seconds, n / max(seconds, 1e-9), where)
    return files, n


def _encode(model: MultiTaskModel, part: list[dict]) -> PairSplit:
    cfg = model.cfg
    low = cfg.features.low_logprob if cfg.features.needs_logprobs else None
    cols = encode_records(part, tokenizer=model.tokenizer, max_length=cfg.model.max_length,
                          pe_max_length=cfg.target_tokens, low_logprob=low)
    if not model.encoder.backbone.uses_token_type_ids:
        cols.pop("token_type_ids", None)
    return PairSplit(pair="input", split="input", columns=cols, dataset=None)


class _Writer:
    """Appends each chunk's predictions to the output files, each kept beside its final name
    until the end."""

    def __init__(self, out: Path, fmt: Format, method: str, stack: contextlib.ExitStack) -> None:
        self.out, self.fmt, self.method, self.stack = out, fmt, method, stack
        self.files: dict[str, IO[str]] = {}
        self.columns: list[str] | None = None

    def _file(self, name: str) -> IO[str]:
        if name not in self.files:
            path = self.out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.stack.enter_context(replace_with(path))
            self.files[name] = self.stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n"))  # noqa: SIM115
        return self.files[name]

    def write(self, ens: Ensemble, split: PairSplit, rows: list[dict[str, Any]]) -> None:
        if self.fmt == "wmt20":
            for head in ens.heads.values():
                for name, lines in head.submission(split, head.from_outputs(rows), method=self.method):
                    self._file(name).writelines(line + "\n" for line in lines)
            return
        ids = [i if i is not None else str(k + 1) for i, k in zip(split.columns["id"], split.columns["index"])]
        f = self._file(OUTPUT_FILES[self.fmt])
        if self.fmt == "jsonl":
            f.writelines(json.dumps({"id": i, **finite(row)}, ensure_ascii=False, allow_nan=False) + "\n"
                         for i, row in zip(ids, rows))
            return
        if self.columns is None:
            self.columns = list(rows[0]) if rows else []
            f.write("\t".join(["id", *self.columns]) + "\n")
        f.writelines("\t".join([_cell(i), *(_cell(row.get(c)) for c in self.columns)]) + "\n"
                     for i, row in zip(ids, rows))

    def close(self) -> list[Path]:
        return [self.out / name for name in self.files]


def _outputs(model: MultiTaskModel, split: PairSplit, device: Any) -> list[dict[str, Any]]:
    """Every head's per-segment outputs, in the split's row order (batches sorted by length)."""
    tok = model.tokenizer
    out: list[dict[str, Any]] = [{} for _ in range(len(split))]
    lengths = [len(x) for x in split.columns["input_ids"]]
    for rows in eval_order(lengths, model.cfg.train.eval_batch_size):
        batch = collate(split.columns, rows, pad_id=tok.pad_token_id, padding_side=tok.padding_side)
        for row, found in zip(rows, model.outputs({k: v.to(device) for k, v in batch.items()})):
            out[row] = found
    return out


def _chunks(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    part: list[dict] = []
    for record in records:
        part.append(record)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def _cell(value: Any) -> str:
    """A TSV cell: numbers at full precision (NaN: nan), lists space-separated, no tab or newline."""
    if isinstance(value, list):
        return " ".join(_cell(v) for v in value)
    if value is None:
        return ""
    text = repr(value) if isinstance(value, float) else str(value)
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


@contextlib.contextmanager
def _progress(total: int | None) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="seg", desc="predict", disable=None, dynamic_ncols=True) as bar:
        yield bar
