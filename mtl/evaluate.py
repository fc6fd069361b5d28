"""Predict a split, score it as WMT scores it (word level at the word level), write the
predictions in the WMT20 QE submission formats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from mtl import metrics as M
from mtl.config import LOWER_IS_BETTER
from mtl.data.dataset import PairSplit, collate, eval_order

EVAL_SEED = 1234  # evaluation draws (MLM masking) use their own generator, never the training RNG


def predict_split(model, split: PairSplit, *, batch_size: int, device: torch.device,
                  autocast: Callable[[], Any]) -> dict[str, list]:
    """Every task's predictions for every row of the split, in row order."""
    was_training = model.training
    model.eval()
    tok = model.tokenizer
    out: dict[str, list] = {name: [None] * len(split) for name in model.heads}
    lengths = [len(x) for x in split.columns["input_ids"]]
    generator = torch.Generator().manual_seed(EVAL_SEED)
    try:
        for rows in eval_order(lengths, batch_size):
            batch = collate(split.columns, rows, pad_id=tok.pad_token_id, padding_side=tok.padding_side)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                preds = model.predict(batch, generator=generator)
            for name, values in preds.items():
                for row, value in zip(rows, values):
                    out[name][row] = value
    finally:
        model.train(was_training)
    return out


def full_length_tags(pred: list[int], n_words: int, *, gaps: bool) -> list[int]:
    """Pad the tags of truncated words with OK (the majority class) to the full sentence."""
    want = 2 * n_words + 1 if gaps else n_words
    return list(pred) + [M.OK] * (want - len(pred))


def score_split(split: PairSplit, preds: dict[str, list]) -> dict[str, dict[str, float]]:
    """Metrics of each task on the rows that have its gold label (none: task omitted)."""
    cols = split.columns
    scores: dict[str, dict[str, float]] = {}
    truncated = split.truncated_words()
    for task, values in preds.items():
        if task in ("da", "hter"):
            rows = [i for i, g in enumerate(cols[task]) if g is not None]
            if rows:
                scores[task] = M.sentence_metrics([values[i] for i in rows], [cols[task][i] for i in rows])
        elif task == "word_tags":
            rows = [i for i, g in enumerate(cols["mt_tags"]) if g is not None]
            if rows:
                pred = [full_length_tags(values[i], len(cols["mt"][i]), gaps=True) for i in rows]
                scores[task] = M.mt_tag_metrics(pred, [cols["mt_tags"][i] for i in rows])
                scores[task]["truncated_words"] = float(truncated["mt"])
        elif task == "source_tags":
            rows = [i for i, g in enumerate(cols["src_tags"]) if g is not None]
            if rows:
                pred = [full_length_tags(values[i], len(cols["src"][i]), gaps=False) for i in rows]
                scores[task] = M.tag_metrics(pred, [cols["src_tags"][i] for i in rows])
                scores[task]["truncated_words"] = float(truncated["src"])
        elif task == "post_edit":
            rows = [i for i, g in enumerate(cols["pe"]) if g]
            if rows:
                scores[task] = M.post_edit_metrics(
                    [" ".join(values[i]) for i in rows], [" ".join(cols["pe"][i]) for i in rows],
                    mt=[" ".join(cols["mt"][i]) for i in rows])
        elif task == "mlm":
            correct = sum(c for c, _ in values)
            total = sum(n for _, n in values)
            scores[task] = {"accuracy": correct / total if total else math.nan}
        else:  # a head without scoring here is a bug of this module, not of the user
            raise KeyError(f"no scoring for task {task!r}")
    return scores


def model_score_floor(root: str | Path, pair: str, split: str = "dev", *, max_samples: int | None = None) -> float:
    """The zero-training floor: Pearson of the NMT system's own ``model_scores`` with DA ``z_mean``.

    Args:
        root: The MLQE-PE root.
        pair: A language pair such as ``"ro-en"``.
        split: The split scored.
        max_samples: Only the first N segments: the rows a run with ``data.max_eval_samples=N``
            is scored on (None: all).

    Returns:
        The Pearson correlation over those segments that have a DA score.

    Raises:
        ValueError: ``max_samples`` is below 1.
        mtl.data.mlqe.DataError: The files cannot be read, or fewer than 2 of the segments have a DA score.
    """
    from mtl.data.mlqe import DataError, read_pair

    if max_samples is not None and max_samples < 1:
        raise ValueError(f"`max_samples >= 1` must hold (or None), but got max_samples={max_samples}")
    rows = [r for r in read_pair(root, pair, split)[:max_samples] if r["da"] is not None]
    if len(rows) < 2:
        raise DataError(f"{pair} {split}: {len(rows)} of the first {max_samples or 'all'} segments have a DA "
                        "z_mean and model_scores, expected at least 2 (a direct-assessments tarball)")
    return M.sentence_metrics([r["model_score"] for r in rows], [r["da"] for r in rows])["pearson"]


def objective(metrics: dict[str, dict[str, dict[str, float]]], terms: dict[str, float]) -> float:
    """Weighted sum of "task.metric" terms, averaged over pairs; lower-is-better terms
    count negatively. NaN when a term is missing or NaN (the run then counts as worst)."""
    per_pair = []
    for pair_metrics in metrics.values():
        total = 0.0
        for key, weight in terms.items():
            task, metric = key.split(".")
            value = pair_metrics.get(task, {}).get(metric, math.nan)
            total += (-weight if metric in LOWER_IS_BETTER else weight) * value
        per_pair.append(total)
    return sum(per_pair) / len(per_pair) if per_pair else math.nan


def write_predictions(split: PairSplit, preds: dict[str, list], out_dir: str | Path, *,
                      method: str = "mtl") -> list[Path]:
    """Write the WMT20 QE submission formats for one pair and split.

    Sentence level (`<task>.txt`): ``pair<TAB>method<TAB>segment<TAB>score``. Word level
    (`word_tags.txt`, `source_tags.txt`): ``pair<TAB>method<TAB>type<TAB>segment<TAB>word
    index<TAB>word<TAB>OK|BAD`` with type mt / gap / source. Post-editing
    (`post_edit.txt`): one output per line.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols, pair, written = split.columns, split.pair, []
    label = lambda t: "BAD" if t == M.BAD else "OK"  # noqa: E731
    for task, values in preds.items():
        path = out / f"{task}.txt"
        lines = []
        if task in ("da", "hter"):
            lines = [f"{pair}\t{method}\t{cols['index'][i]}\t{v:.6f}" for i, v in enumerate(values)]
        elif task == "word_tags":
            for i, tags in enumerate(values):
                words, seg = cols["mt"][i], cols["index"][i]
                tags = full_length_tags(tags, len(words), gaps=True)
                for j, word in enumerate(words):
                    lines.append(f"{pair}\t{method}\tmt\t{seg}\t{j}\t{word}\t{label(tags[2 * j + 1])}")
                for j in range(len(words) + 1):
                    lines.append(f"{pair}\t{method}\tgap\t{seg}\t{j}\tgap\t{label(tags[2 * j])}")
        elif task == "source_tags":
            for i, tags in enumerate(values):
                words, seg = cols["src"][i], cols["index"][i]
                tags = full_length_tags(tags, len(words), gaps=False)
                lines += [f"{pair}\t{method}\tsource\t{seg}\t{j}\t{w}\t{label(tags[j])}" for j, w in enumerate(words)]
        elif task == "post_edit":
            lines = [" ".join(words) for words in values]
        else:
            continue  # mlm is auxiliary: nothing to submit
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written
