"""One trial, on the worker: train a plan's config(s) with `mtl.train` and report scores.

No Ray here: `search.tune` hands in `report` (it calls `ray.tune.report`) and, in per_pair
mode, runs `train_pair` as parallel Ray tasks and follows them with `PairProgress`.
A trial that raises leaves `error.json` (reason and traceback) in its run directory, for
the driver to record as the FAIL reason; the exception still propagates.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from mtl.config import config_from_dict
from search.objective import AGGREGATORS, pair_metric
from search.study import ERROR_FILE

Report = Callable[[dict[str, Any]], None]
Metrics = dict[str, dict[str, dict[str, float]]]  # {pair: {task: {metric: value}}}


def scores_of(metrics: Metrics, plan: dict[str, Any], *, terms: dict[str, dict[str, float]]) -> tuple[list[float], dict]:
    """Each objective aggregated over pairs, and the per-pair values behind it.

    Args:
        metrics: ``{pair: {task: {metric: v}}}``.
        plan: The trial plan (metrics, aggregator, history).
        terms: Per pair, the trainer's objective terms (for the metric named ``objective``).

    Returns:
        ``([aggregate per objective], {objective: {pair: value}})``.
    """
    from mtl.evaluate import objective

    aggregate = AGGREGATORS[plan["aggregator"]]
    scores, per_pair = [], {}
    for name, direction in plan["metrics"]:
        if name == "objective":
            values = {pair: objective({pair: m}, terms[pair]) for pair, m in metrics.items()}
        else:
            values = pair_metric(metrics, name)
        per_pair[name] = values
        scores.append(float(aggregate(values, plan["history"].get(name, []), direction=direction)))
    return scores, per_pair


def _result(step: int, metrics: Metrics, plan: dict[str, Any], terms, *, final: bool, started: float) -> dict[str, Any]:
    scores, per_pair = scores_of(metrics, plan, terms=terms)
    return {"step": step, "score": scores[0], "scores": scores, "final": final,
            "pair_scores": json.dumps(per_pair), "metrics": json.dumps(metrics),
            "seconds": time.monotonic() - started}


def _final(best: dict[str, Any], last: dict[str, Any] | None) -> dict[str, Any]:
    """The final result: the best checkpoint's scores, carrying the last evaluation's point
    of the learning curve. The last evaluation is never reported alone: a scheduler that
    stopped the trial there would record a run that trained to its end as pruned."""
    if last is not None:
        best = {**best, "curve_step": last["step"], "curve_scores": last["scores"]}
    return best


def _write_error(run_dir: Path, err: BaseException) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).write_text(json.dumps({"reason": repr(err), "traceback": traceback.format_exc()}),
                                      encoding="utf-8")


def run_joint(plan: dict[str, Any], *, report: Report) -> None:
    """One model on all pairs: report after every evaluation (the learning curve), then the
    best checkpoint's scores as the final result (`final: True`)."""
    from mtl.train import train

    started = time.monotonic()
    run_dir = Path(plan["run_dir"])
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    try:
        cfg = config_from_dict(plan["configs"]["all"], source=f"trial {plan['number']}")
        terms = {pair: cfg.objective_terms() for pair in cfg.data.pairs}

        last: list[dict[str, Any]] = []

        def on_eval(*, step: int, metrics: Metrics, final: bool, **_: Any) -> None:
            result = _result(step, metrics, plan, terms, final=False, started=started)
            if final:
                last.append(result)  # sent with the final result, below
            else:
                report(result)

        result = train(cfg, out_dir=run_dir, report=on_eval)
        best = _result(result["steps"], result["metrics"], plan, terms, final=True, started=started)
        report(_final(best, last[0] if last else None))
    except Exception as e:  # not SystemExit: Ray stops a pruned trial with sys.exit inside tune.report
        _write_error(run_dir, e)
        raise


def train_pair(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Train one pair's config (a Ray task in per_pair mode); returns its metrics.json."""
    from mtl.train import train

    try:
        return train(config_from_dict(config, source=f"{out_dir}"), out_dir=out_dir)
    except Exception as e:  # not SystemExit: Ray stops a pruned trial with sys.exit inside tune.report
        _write_error(Path(out_dir), e)
        raise


class PairProgress:
    """Follows the per-pair runs of a per_pair trial through their history files and
    yields the evaluation steps that every pair has reached."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.run_dir = Path(plan["run_dir"])
        self.pairs = list(plan["configs"])
        self.terms = {pair: config_from_dict(cfg, source=pair).objective_terms()
                      for pair, cfg in plan["configs"].items()}
        self.reported = 0
        self.started = time.monotonic()

    def pair_dir(self, pair: str) -> str:
        return str(self.run_dir / pair)

    def _evals(self, pair: str) -> dict[int, dict]:
        path = self.run_dir / pair / "history.jsonl"
        if not path.exists():
            return {}
        evals = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line being written right now: read it next time
                break
            if "eval" in record:
                evals[record["step"]] = record["eval"]
        return evals

    def _common(self) -> list[tuple[int, dict]]:
        evals = {pair: self._evals(pair) for pair in self.pairs}
        steps = sorted(set.intersection(*(set(e) for e in evals.values())))
        return [(step, {pair: evals[pair][step][pair] for pair in self.pairs}) for step in steps]

    def new_results(self) -> list[dict[str, Any]]:
        """Intermediate results for the steps all pairs have evaluated since the last call,
        but the newest: it may be the last one, which goes into the final result."""
        common = self._common()[:-1]
        out = [_result(step, metrics, self.plan, self.terms, final=False, started=self.started)
               for step, metrics in common[self.reported:]]
        self.reported = max(self.reported, len(common))
        return out

    def final_result(self, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The final result from each pair's metrics.json (its best checkpoint), with the
        last common evaluation as the curve's last point."""
        metrics = {pair: results[pair]["metrics"][pair] for pair in self.pairs}
        step = max(r["steps"] for r in results.values())
        common = self._common()
        last = common[-1] if len(common) > self.reported else None
        best = _result(step, metrics, self.plan, self.terms, final=True, started=self.started)
        return _final(best, _result(*last, self.plan, self.terms, final=False, started=self.started) if last else None)

