"""The checks of a space file's other blocks: weights, datasets, objective, sampler, scheduler,
enqueue and run. Each appends its problems to the `Context` and returns what it could read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mtl.catalogue import TASKS, metric_direction, metric_problem
from mtl.config_loader import ConfigError, build, unknown_key
from mtl.weighting import WEIGHTINGS
from reports.aggregators import AGGREGATORS
from search.distributions import Param, contains, describe, number
from search.fidelity import DataFidelity
from search.options import RunOptions
from search.racing import Race, race_problems
from search.samplers import read_sampler
from search.schedulers import read_scheduler
from search.space_checks import Context
from search.warm_start import SEPARATOR, WarmStart

__all__ = ["check_datasets", "check_enqueue", "check_objective", "check_run", "check_sampler", "check_scheduler",
           "check_warm_start", "check_weights"]

_PAIR = re.compile(r"[a-z]{2,3}-[a-z]{2,3}")


def _unknown(ctx: Context, key: str, valid: tuple[str, ...], what: str, where: str) -> None:
    ctx.problem(unknown_key(key, valid, what, path=where))


def check_weights(ctx: Context, raw: Any, params: list[Param]) -> tuple[tuple[str, ...], float, dict[str, tuple]]:
    """``weights: {tasks, min, when}``: (the tasks whose weights are searched, the floor, the condition)."""
    if raw is None:
        return (), 0.0, {}
    if not isinstance(raw, Mapping):
        ctx.err("weights", f"must be a mapping: {{}} for every enabled task, or {{tasks: [..], min: 0.05, "
                           f"when: {{..}}}}, got {raw!r}")
        return (), 0.0, {}
    for key in raw:
        if key not in ("tasks", "min", "when"):
            _unknown(ctx, str(key), ("tasks", "min", "when"), "weights", f"weights.{key}")
    floor = number(raw.get("min", 0.0))
    if floor is None or not 0.0 <= floor < 1.0:
        ctx.err("weights.min", f"must be a number in [0, 1), got {raw.get('min')!r}")
        floor = 0.0
    when = ctx.parse_when(raw.get("when"), "weights.when")
    if ctx.cfg is None or when is None:
        return (), floor, {}
    enabled = tuple(ctx.cfg.tasks)
    tasks = raw.get("tasks", list(enabled))
    if not isinstance(tasks, list) or len(set(map(str, tasks))) < 2 or len(set(map(str, tasks))) < len(tasks):
        ctx.err("weights.tasks", f"must list at least 2 different enabled tasks (one weight on the simplex "
                                 f"is constant), got {tasks!r}")
        return (), floor, when
    for t in tasks:
        if t not in enabled:
            ctx.err("weights.tasks", f"task {t!r} is not enabled in base.tasks; enabled: {', '.join(enabled)}")
        elif any(p.path == f"tasks.{t}.weight" for p in params):
            ctx.err(f"search.tasks.{t}.weight", "is also set by the weights block; search one or the other")
    ctx.check_when(when, "weights", params, before=len(params))
    reach = ctx.reachable("weighting", when, params) or ()
    ignoring = [w for w in reach if w in WEIGHTINGS and not WEIGHTINGS[w].reads_task_weights]
    if ignoring:
        readers = [name for name, row in WEIGHTINGS.items() if row.reads_task_weights]
        searched = any(p.path == "weighting" for p in params)
        fix = (f"add when: {{weighting: [{', '.join(readers)}]}}" if searched else
               f"remove the weights block, or set base.weighting to {' or '.join(readers)}")
        ctx.err("weights", f"has no effect with {'' if searched else 'base.'}weighting {ignoring[0]!r}: only "
                           f"{' and '.join(readers)} use tasks.<t>.weight; {fix}")
    return tuple(tasks), floor, when


def check_datasets(ctx: Context, raw: Any) -> tuple[tuple[str, ...], str, Race | None]:
    """``datasets: {pairs, mode, race}``: one source of truth for the pairs (base.data.pairs or
    this); a pair is an MLQE-PE language pair or a dataset of ``base.data.datasets``; ``race``:
    `search.racing`."""
    default = tuple(ctx.cfg.data.pairs) if ctx.cfg else ()
    named = tuple(ctx.cfg.data.datasets) if ctx.cfg else ()
    if raw is None:
        return default, "joint", None
    if not isinstance(raw, Mapping):
        ctx.err("datasets", f"must be a mapping {{pairs: [en-de, ..], mode: joint | per_pair}}, got {raw!r}")
        return default, "joint", None
    for key in raw:
        if key not in ("pairs", "mode", "race"):
            _unknown(ctx, str(key), ("pairs", "mode", "race"), "datasets", f"datasets.{key}")
    pairs = raw.get("pairs", list(default))
    pairs = [pairs] if isinstance(pairs, str) else pairs
    if not isinstance(pairs, list) or not pairs:
        ctx.err("datasets.pairs", f"must be a non-empty list of pairs like en-de, got {pairs!r}")
        pairs = list(default)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, str) or (pair not in named and not _PAIR.fullmatch(pair)):
            also = f"; or name a dataset of base.data.datasets: {', '.join(named)}" if named else \
                "; or declare a dataset of your own in base.data.datasets"
            ctx.err(f"datasets.pairs[{i}]", f"must look like 'en-de' (two lowercase language codes), got "
                                            f"{pair!r}{also}")
        elif pairs.index(pair) < i:
            ctx.err(f"datasets.pairs[{i}]", f"{pair!r} is listed twice")
    base_data = ctx.base_raw.get("data")
    base_pairs = base_data.get("pairs") if isinstance(base_data, Mapping) else None
    if "pairs" in raw and base_pairs is not None and ctx.cfg is not None and list(ctx.cfg.data.pairs) != list(pairs):
        ctx.err("datasets.pairs", f"{list(pairs)} disagrees with base.data.pairs {list(ctx.cfg.data.pairs)}: the "
                                  f"trials use datasets.pairs; write the pairs in one place (remove base.data.pairs)")
    mode = raw.get("mode", "joint")
    if mode not in ("joint", "per_pair"):
        ctx.err("datasets.mode", f"must be one of joint, per_pair, got {mode!r}")
    race, problems = race_problems(raw.get("race"), pairs=len(pairs), mode=str(mode))
    for key, message in problems:
        ctx.err(key, message)
    return tuple(map(str, pairs)), str(mode), race


def check_objective(ctx: Context, raw: Any) -> tuple[list[tuple[str, str]], str]:
    """``objective: {metrics, aggregator}``: [(metric, direction)], aggregator name."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        ctx.err("objective", f"must be a mapping {{metrics: [..], aggregator: mean}}, got {raw!r}")
        return [("objective", "maximize")], "mean"
    for key in raw:
        if key not in ("metrics", "aggregator"):
            _unknown(ctx, str(key), ("metrics", "aggregator"), "objective", f"objective.{key}")
    items = raw.get("metrics", ["objective"])
    items = [items] if isinstance(items, (str, Mapping)) else items
    if not isinstance(items, list) or not items:
        ctx.err("objective.metrics", f"must be a non-empty list of metrics, got {items!r}")
        items = []
    metrics: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if metric := _metric(ctx, item, f"objective.metrics[{i}]", [m[0] for m in metrics]):
            metrics.append(metric)
    aggregator = raw.get("aggregator", "mean")
    if not isinstance(aggregator, str):
        ctx.err("objective.aggregator", f"must be a name, got {aggregator!r}")
    elif aggregator not in AGGREGATORS:
        hint = unknown_key(aggregator, sorted(AGGREGATORS), "").hint
        ctx.err("objective.aggregator", f"unknown {aggregator!r}; {hint}")
    return metrics or [("objective", "maximize")], str(aggregator)


def _metric(ctx: Context, item: Any, where: str, seen: list[str]) -> tuple[str, str] | None:
    name, direction = item, None
    if isinstance(item, Mapping):
        for key in item:
            if key not in ("metric", "direction"):
                _unknown(ctx, str(key), ("metric", "direction"), "a metric", f"{where}.{key}")
        name, direction = item.get("metric"), item.get("direction")
    if name == "objective":
        direction = direction or "maximize"
    else:
        if not isinstance(name, str) or name.count(".") != 1 or not all(name.split(".")):
            ctx.err(where, f"must be 'objective' (the trainer's own), 'task.metric' (e.g. 'da.pearson') or "
                           f"{{metric: task.metric, direction: minimize}}, got {name!r}")
            return None
        # with a broken base, check against every task (its tasks are unknown)
        problem = metric_problem(name, ctx.cfg.tasks if ctx.cfg is not None else TASKS, path=where)
        if problem is not None:
            ctx.problem(problem)
            return None
        direction = direction or metric_direction(name)
    if name in seen:
        ctx.err(where, f"{name!r} is listed twice")
        return None
    if direction not in ("maximize", "minimize"):
        ctx.err(f"{where}.direction", f"must be maximize or minimize, got {direction!r}")
        return None
    return name, direction


def check_sampler(ctx: Context, raw: Any, params: list[Param], weight_tasks: tuple[str, ...],
                  n_metrics: int) -> tuple[str, dict[str, Any]]:
    floats = [p.path for p in params if isinstance(p.distribution, FloatDistribution) and p.distribution.step is None]
    name, args, problems = read_sampler(raw, n_metrics=n_metrics, weights=bool(weight_tasks),
                                        floats_without_step=floats)
    for key, message in problems:
        ctx.err(key, message)
    return name, args


def check_scheduler(ctx: Context, raw: Any, metrics: list[tuple[str, str]],
                    params: list[Param]) -> tuple[str, dict[str, Any], DataFidelity | None]:
    """``scheduler: {name, ..options}``: (name, options, data-size rungs or None)."""
    max_steps = ctx.cfg.train.max_steps if ctx.cfg is not None else None
    name, args, fidelity, problems = read_scheduler(raw, metrics=[m[0] for m in metrics], max_steps=max_steps)
    for key, message in problems:
        ctx.err(key, message)
    rungs = fidelity is not None or (isinstance(raw, Mapping) and "train_samples" in raw)
    if rungs and any(p.path == "data.max_train_samples" for p in params):
        ctx.err("search.data.max_train_samples", "is set by scheduler.train_samples (one size per rung); search "
                                                 "one or the other")
    return name, args, fidelity


def check_enqueue(ctx: Context, raw: Any, dists: dict[str, BaseDistribution]) -> tuple[dict[str, Any], ...]:
    """``enqueue: [{dotted.key: value}]``: each a value its searched key can take."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        ctx.err("enqueue", f"must be a list of {{dotted.key: value}} mappings, got {raw!r}")
        return ()
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not entry:
            ctx.err(f"enqueue[{i}]", f"must be a mapping {{dotted.key: value}} of searched keys, got {entry!r}")
            continue
        values = {}
        for key, value in entry.items():
            at, dist = f"enqueue[{i}].{key}", dists.get(str(key))
            if dist is None:
                problem = unknown_key(str(key), list(dists), "the searched keys", path=at)
                ctx.err(at, f"not a searched parameter; {(problem.hint or '').replace('valid:', 'searched:')}")
                continue
            numeric = not isinstance(dist, CategoricalDistribution) and not isinstance(value, bool)
            if numeric and (v := number(value)) is not None:  # YAML reads 1e-4 as a string
                value = int(v) if isinstance(dist, IntDistribution) and v.is_integer() else v
            if contains(dist, value):
                values[str(key)] = value
            else:
                ctx.err(at, f"must be {describe(dist)}, got {value!r}")
        out.append(values)
    return tuple(out)


def check_run(ctx: Context, raw: Any, overrides: Mapping[str, Any]) -> RunOptions | None:
    """``run``: the command line's defaults, the flags given applied (their errors say so)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        ctx.err("run", f"must be a mapping of command-line defaults, got {raw!r}")
        return None
    given = {k: str(v) if isinstance(v, PurePath) else v for k, v in overrides.items() if v is not None}
    try:
        built = build(RunOptions, {**raw, **given}, source=ctx.source, path="run")
    except ConfigError as e:
        for problem in e.problems:
            flag = problem.path.removeprefix("run.") in given
            ctx.errors.append(problem.line(ctx.source) + (" (from the command line)" if flag else ""))
        return None
    assert isinstance(built, RunOptions)
    return built


def check_warm_start(ctx: Context, raw: Any, flags: list[str] | None) -> WarmStart | None:
    """``warm_start: {studies: [NAME | URL::NAME, ..], top: K}``; ``--warm-start`` flags replace the studies."""
    if raw is None and not flags:
        return None
    raw = {} if raw is None else raw
    if isinstance(raw, list):
        raw = {"studies": raw}
    if not isinstance(raw, Mapping):
        ctx.err("warm_start", f"must be a mapping {{studies: [name or URL::name, ..], top: 4}}, got {raw!r}")
        return None
    for key in raw:
        if key not in ("studies", "top"):
            _unknown(ctx, str(key), ("studies", "top"), "warm_start", f"warm_start.{key}")
    studies = list(flags) if flags else raw.get("studies")
    studies = [studies] if isinstance(studies, str) else studies
    where = "warm_start.studies" + (" (from --warm-start)" if flags else "")
    ok = True
    if not isinstance(studies, list) or not studies:
        ctx.err(where, f"must list earlier studies (a name in this storage, or URL{SEPARATOR}name), got {studies!r}")
        ok = False
    else:
        for i, text in enumerate(studies):
            if not isinstance(text, str) or not text.rpartition(SEPARATOR)[2].strip():
                ctx.err(f"warm_start.studies[{i}]", f"must be a study name or URL{SEPARATOR}name, got {text!r}")
                ok = False
    top = raw.get("top", 4)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        ctx.err("warm_start.top", f"must be an integer >= 1 (configs taken from each study), got {top!r}")
        ok = False
    return WarmStart(studies=tuple(str(x) for x in studies or ()), top=int(top), flags=bool(flags)) if ok else None
