"""One trial, on the worker: train a plan's config(s) with `mtl.train` and report scores.

No Ray here: `search.tune` hands in `report` (it calls `ray.tune.report`) and, in per_pair
mode, runs `train_pair` as parallel Ray tasks and follows them with `PairProgress`.
A trial that raises leaves `error.json` (reason and traceback) in its run directory, for
the driver to record as the FAIL reason; the exception still propagates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

from mtl.config import config_from_dict
from mtl.files import write_json
from mtl.rundir import RunDir
from reports.aggregators import AGGREGATORS, pair_metric
from reports.record import JOINT, TrialConfigs
from search.plan import TrialPlan

Report = Callable[[dict[str, Any]], None]
Metrics = dict[str, dict[str, dict[str, float]]]  # {pair: {task: {metric: value}}}

__all__ = ["PairProgress", "run_joint", "run_pairs_in_order", "run_rungs", "scores_of", "train_pair"]


def scores_of(metrics: Metrics, plan: TrialPlan, *, terms: dict[str, dict[str, float]]) -> tuple[list[float], dict]:
    """Each objective aggregated over pairs, and the per-pair values behind it.

    Args:
        metrics: ``{pair: {task: {metric: v}}}``.
        plan: The trial plan (metrics, aggregator, history).
        terms: Per pair, the trainer's objective terms (for the metric named ``objective``).

    Returns:
        ``([aggregate per objective], {objective: {pair: value}})``.
    """
    from mtl.evaluate import objective

    aggregate = AGGREGATORS[plan.aggregator]
    scores, per_pair = [], {}
    for name, direction in plan.metrics:
        if name == "objective":
            values = {pair: objective({pair: m}, terms[pair]) for pair, m in metrics.items()}
        else:
            values = pair_metric(metrics, name)
        per_pair[name] = values
        scores.append(float(aggregate(values, plan.history.get(name, []), direction=direction)))
    return scores, per_pair


def _result(step: int, metrics: Metrics, plan: TrialPlan, terms: dict[str, dict[str, float]], *, final: bool,
            started: float) -> dict[str, Any]:
    scores, per_pair = scores_of(metrics, plan, terms=terms)
    # the schedulers rank an undefined objective (a metric the predictions leave undefined, e.g.
    # MCC when every tag is OK) last, as the trainer does: NaN would slip past ASHA's cutoffs
    worst = -math.inf if plan.metrics[0][1] == "maximize" else math.inf
    score = scores[0] if math.isfinite(scores[0]) else worst
    # metrics travel as JSON text: Ray would flatten nested dicts into its own keys
    return {"step": step, "score": score, "scores": scores, "final": final,
            "pair_scores": json.dumps(per_pair), "metrics": json.dumps(metrics),
            "seconds": time.monotonic() - started}


def _final(best: dict[str, Any], last: dict[str, Any] | None) -> dict[str, Any]:
    """The final result: the best checkpoint's scores, carrying the last evaluation's point
    of the learning curve. The last evaluation is never reported alone: a scheduler that
    stopped the trial there would record a run that trained to its end as pruned."""
    if last is not None:
        best = {**best, "curve_step": last["step"], "curve_scores": last["scores"]}
    return best


def write_error(run: RunDir, err: BaseException) -> None:
    """Write ``error.json`` (the error and its traceback) into a run directory."""
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.error, {"reason": repr(err), "traceback": traceback.format_exc()})


class _RacedOut(Exception):
    """A joint trial's race stopped it at an evaluation (reported already)."""


def run_joint(plan: TrialPlan, *, report: Report) -> None:
    """One model on all pairs: report after every evaluation (the learning curve), then the
    best checkpoint's scores as the final result (`final: True`). With a race
    (`search.racing`), each evaluation's per-pair scores are kept (``pair_curve``) and compared
    with the incumbent's at the same step; a trial the race stops ends there, PRUNED."""
    from mtl.train import train
    from search.racing import Race

    started = time.monotonic()
    run = RunDir(plan.run_dir)
    run.error.unlink(missing_ok=True)
    name, direction = plan.metrics[0]
    race, best = (Race(**plan.race), plan.incumbent) if plan.race else (None, None)
    curve: dict[str, dict[str, float]] = {}  # step -> this trial's per-pair scores (a race's record)
    try:
        cfg = config_from_dict(plan.configs.configs[JOINT], source=f"trial {plan.number}")
        terms = {pair: cfg.objective_terms() for pair in cfg.data.pairs}
        last: list[dict[str, Any]] = []

        def on_eval(*, step: int, metrics: Metrics, final: bool, **_: Any) -> None:
            result = _result(step, metrics, plan, terms, final=False, started=started)
            if race is not None:
                curve[str(step)] = json.loads(result["pair_scores"])[name]
                result["pair_curve"] = json.dumps(curve)
            if final:
                last.append(result)  # sent with the final result, below
                return
            theirs = best["curve"].get(str(step)) if race and best else None  # same step, or no verdict
            why = race.verdict(curve[str(step)], theirs, maximize=direction == "maximize") if race and theirs else None
            if best and why:
                report({**result, "raced_out": f"raced out at step {step} against trial {best['trial']} at the "
                                               f"same step: {why}"})
                raise _RacedOut
            report(result)

        result = train(cfg, out_dir=run.path, report=on_eval)
        best_ckpt = _result(result["steps"], result["metrics"], plan, terms, final=True, started=started)
        report({**_final(best_ckpt, last[0] if last else None), **({"pair_curve": json.dumps(curve)} if race else {})})
    except _RacedOut:
        return  # its last report says why; the driver records it PRUNED
    except Exception as e:  # not SystemExit: Ray stops a pruned trial with sys.exit inside tune.report
        write_error(run, e)
        raise


def train_pair(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Train one pair's config (a Ray task in per_pair mode); returns its metrics.json."""
    from mtl.train import train

    try:
        return train(config_from_dict(config, source=f"{out_dir}"), out_dir=out_dir)
    except Exception as e:  # not SystemExit: Ray stops a pruned trial with sys.exit inside tune.report
        write_error(RunDir(out_dir), e)
        raise


def run_pairs_in_order(plan: TrialPlan, *, report: Report) -> None:
    """per_pair racing (`search.racing`): train the pairs one after another in this process,
    report after each (training_iteration = pairs scored, so the scheduler compares trials on
    the same pairs), and stop early once the race's rule says the trial is clearly worse than
    the incumbent on the pairs scored so far."""
    from search.racing import Race

    assert plan.race is not None
    race = Race(**plan.race)
    started = time.monotonic()
    runs = plan.configs.run_dirs(plan.run_dir)
    name, direction = plan.metrics[0]
    results: dict[str, dict[str, Any]] = {}
    terms: dict[str, dict[str, float]] = {}
    pairs = list(plan.configs.configs)
    for i, pair in enumerate(pairs, 1):
        results[pair] = train_pair(plan.configs.configs[pair], str(runs[pair].path))
        terms[pair] = config_from_dict(plan.configs.configs[pair], source=pair).objective_terms()
        metrics = {p: r["metrics"][p] for p, r in results.items()}
        result = _result(i, metrics, plan, terms, final=i == len(pairs), started=started)
        result["pairs_scored"] = list(results)
        if i == len(pairs):
            result["step"] = max(r["steps"] for r in results.values())
            report(result)
            return
        best = plan.incumbent  # None: no trial has completed yet, nothing to race against
        why = race.verdict(json.loads(result["pair_scores"])[name], best["scores"],
                           maximize=direction == "maximize") if best else None
        if best and why:
            report({**result, "raced_out": f"raced out after {i} of {len(pairs)} pairs against trial "
                                           f"{best['trial']}: {why}"})
            return
        report(result)


def run_rungs(plan: TrialPlan, *, report: Report, run: Callable[[TrialPlan, Report], None]) -> None:
    """Data-size rungs (`search.fidelity`): train the trial once per rung with the rung's
    training data, each in its own run directory, with ``run`` (the joint or per_pair runner),
    and report each rung's best checkpoint with ``rung``; the last rung's is final.
    The scheduler stops the trial inside ``report`` at a rung where it falls behind."""
    from search.fidelity import DataFidelity, label, rung_dir, with_size

    assert plan.train_samples is not None
    fid = DataFidelity(sizes=tuple(plan.train_samples), factor=plan.rung_factor)
    for k, size in enumerate(fid.sizes):
        rung = dataclasses.replace(plan, run_dir=rung_dir(plan.run_dir, size),
                                   configs=TrialConfigs(plan.configs.mode, with_size(plan.configs.configs, size)))
        results: list[dict[str, Any]] = []
        run(rung, results.append)  # its evaluations within the rung are not reported: one result per rung
        if not results or not results[-1].get("final"):
            raise RuntimeError(f"rung {label(size)} of trial {plan.number} ended without its final result")
        final = k == len(fid.sizes) - 1
        # the intermediate values' x axis is the rung (1, 2, ...), the last rung's too: not its training steps
        point = {"curve_step": k + 1, "curve_scores": results[-1]["scores"]} if final else {"report_step": k + 1}
        report({**results[-1], "final": final, "rung": fid.rung(k), "train_samples": label(size), **point})


class PairProgress:
    """Follows the per-pair runs of a per_pair trial through their history files and
    yields the evaluation steps that every pair has reached."""

    def __init__(self, plan: TrialPlan) -> None:
        self.plan = plan
        self.runs = plan.configs.run_dirs(plan.run_dir)
        self.terms = {pair: config_from_dict(cfg, source=pair).objective_terms()
                      for pair, cfg in plan.configs.configs.items()}
        self.reported = 0
        self.started = time.monotonic()

    def pair_dir(self, pair: str) -> str:
        return str(self.runs[pair].path)

    def _evals(self, pair: str) -> dict[int, dict]:
        return {r["step"]: r["eval"] for r in self.runs[pair].history_records() if "eval" in r}

    def _common(self) -> list[tuple[int, dict]]:
        evals = {pair: self._evals(pair) for pair in self.runs}
        steps = sorted(set.intersection(*(set(e) for e in evals.values())))
        return [(step, {pair: evals[pair][step][pair] for pair in self.runs}) for step in steps]

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
        metrics = {pair: results[pair]["metrics"][pair] for pair in self.runs}
        step = max(r["steps"] for r in results.values())
        common = self._common()
        last = common[-1] if len(common) > self.reported else None
        best = _result(step, metrics, self.plan, self.terms, final=True, started=self.started)
        return _final(best, _result(*last, self.plan, self.terms, final=False, started=self.started) if last else None)
