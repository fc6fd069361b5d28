"""The checks behind `search.space.load_space`: each block of a space file, errors collected.

Every check appends ``file: dotted.key: message`` lines to `Context.errors` and returns what
it could read, so one pass reports every problem of the file. Searched keys are checked
against the trainer's own validator by setting sample values into a copy of `base`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mtl.config import (LOWER_IS_BETTER, TASK_CONFIGS, WEIGHTING_OPTIONS, ConfigError, RunConfig, _build,
                        _unknown_key_message, config_from_dict, to_dict)
from mtl.model.backbones import BACKBONES
from mtl.registry import UnknownNameError, lookup
from search.distributions import contains, describe, from_spec, number, sample_points
from search.objective import AGGREGATORS
from search.samplers import read_sampler, read_scheduler

TOP_KEYS = ("base", "search", "weights", "datasets", "objective", "sampler", "scheduler", "enqueue", "run")
_SPEC_KEYS = {"float": ("type", "low", "high", "log", "step", "when"),
              "int": ("type", "low", "high", "log", "step", "when"),
              "categorical": ("type", "choices", "when")}
# Sizes of an encoder built from config; a pretrained checkpoint keeps its own.
_BUILT_ONLY = frozenset({"model.hidden_size", "model.num_layers", "model.num_heads",
                         "model.intermediate_size", "model.vocab_size"})
_NOT_SEARCHED = {"data.pairs": "set by datasets.pairs", "data.root": "set by run.data (or --data)"}
# The strategies that read tasks.<t>.weight (see TaskConfig.weight); the others learn weights.
USES_TASK_WEIGHTS = ("fixed", "pcgrad")
_PAIR = re.compile(r"[a-z]{2,3}-[a-z]{2,3}")
_PROBE = "<probe>"
_MISSING = object()

Spec = tuple[str, BaseDistribution, dict[str, tuple]]
"""A parsed search entry: (path, distribution, when)."""


class Context:
    """One space file being checked: where messages point, what was read so far, the errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.base_raw: Mapping[str, Any] = {}
        self.cfg: RunConfig | None = None  # None: base is invalid, checks against it are skipped
        self.full: dict[str, Any] = {}  # the base config with its defaults, as plain data
        self.bad_paths: set[str] = set()

    def err(self, key: str, message: str) -> None:
        self.errors.append(f"{self.source}: {key}: {message}")

    def check_top(self, raw: Mapping[str, Any]) -> None:
        for key in raw:
            if key not in TOP_KEYS:
                self.err(str(key), _unknown_key_message(str(key), TOP_KEYS, "a space file"))

    def check_base(self, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            return self.err("base", f"must be a mapping (a trainer config), got {raw!r}")
        self.base_raw = raw
        try:
            self.cfg = config_from_dict(raw, source=f"{self.source}: base")
        except ConfigError as e:
            self.errors.extend(e.errors)
        else:
            self.full = to_dict(self.cfg)

    # --- search ----------------------------------------------------------------------------

    def check_search(self, raw: Any) -> list[Spec]:
        if raw is None:
            return []
        if not isinstance(raw, Mapping):
            self.err("search", f"must be a mapping of dotted.key -> spec, got {raw!r}")
            return []
        specs = [s for path, spec in raw.items() if (s := self._spec(str(path), spec))]
        if self.cfg is not None:
            for i, spec in enumerate(specs):
                self._check_param(spec, specs, i)
        return specs

    def _spec(self, path: str, spec: Any) -> Spec | None:
        where = f"search.{path}"
        self.bad_paths.add(path)
        if not isinstance(spec, Mapping):
            self.err(where, f"must be a mapping like {{type: float, low: 0.0001, high: 0.01, log: true}}, "
                            f"got {spec!r}")
            return None
        kind = spec.get("type")
        if kind not in _SPEC_KEYS:
            self.err(f"{where}.type", f"unknown {kind!r}; valid: categorical, float, int")
            return None
        unknown = [k for k in spec if k not in _SPEC_KEYS[kind]]
        for key in unknown:
            self.err(f"{where}.{key}", _unknown_key_message(str(key), _SPEC_KEYS[kind], f"a {kind} parameter"))
        when = self.parse_when(spec.get("when"), f"{where}.when")
        try:
            dist = from_spec(kind, spec)
        except ValueError as e:
            self.err(where, str(e))
            return None
        if unknown or when is None:
            return None
        self.bad_paths.discard(path)
        return path, dist, when

    def parse_when(self, raw: Any, where: str) -> dict[str, tuple] | None:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping) or not raw:
            self.err(where, f"must be a mapping {{dotted.key: value or [values]}}, got {raw!r}")
            return None
        when = {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in raw.items()}
        for key in [k for k, v in when.items() if not v]:
            self.err(f"{where}.{key}", "lists no values")
        return None if any(not v for v in when.values()) else when

    def check_when(self, when: Mapping[str, tuple], where: str, specs: list[Spec], before: int) -> bool:
        """Each condition must name a parameter sampled before ``before``, or a base key, and be able to hold."""
        ok = True
        for key, allowed in when.items():
            problem = self._condition_problem(key, allowed, specs, before)
            if problem:
                self.err(f"{where}.when.{key}", problem)
            ok = ok and problem is None and key not in self.bad_paths
        return ok

    def _condition_problem(self, key: str, allowed: tuple, specs: list[Spec], before: int) -> str | None:
        index = {s[0]: j for j, s in enumerate(specs)}
        if key in self.bad_paths:
            return None  # reported where it is defined
        if key in index and index[key] == before:
            return "a parameter cannot depend on itself"
        if key in index and index[key] > before:
            return (f"search.{key} comes later in the file; a condition reads the values sampled before it, "
                    f"so move search.{key} above")
        if key in index:
            _, dist, when = specs[index[key]]
            if any(contains(dist, v) for v in allowed) or (when and self._base_value(key) in allowed):
                return None
            unsampled = f" (or base {self._base_value(key)!r} when not sampled)" if when else ""
            return f"can never hold: search.{key} is {describe(dist)}{unsampled}, got {_show(allowed)}"
        try:
            value = dotted_get(self.full, key)
        except KeyError as e:
            return e.args[0]
        if value not in allowed:
            return f"can never hold: base.{key} is {value!r} and is not searched, got {_show(allowed)}"
        return None

    def _base_value(self, key: str) -> Any:
        try:
            return dotted_get(self.full, key)
        except KeyError:
            return _MISSING

    def reachable(self, key: str, when: Mapping[str, tuple], specs: list[Spec]) -> list[Any] | None:
        """Values ``key`` can have where ``when`` holds (None: a numeric searched key, not listed)."""
        found = {s[0]: s for s in specs}
        values = []
        if key in found:
            if not isinstance(found[key][1], CategoricalDistribution):
                return None
            values = list(found[key][1].choices)
        if (key not in found or found[key][2]) and self._base_value(key) is not _MISSING:
            values.append(self._base_value(key))  # a conditional parameter may keep the base value
        return [v for v in values if v in when.get(key, (v,))]

    def _check_param(self, spec: Spec, specs: list[Spec], i: int) -> None:
        path, dist, when = spec
        where = f"search.{path}"
        ok = self.check_when(when, where, specs, before=i)
        parts = path.split(".")
        assert self.cfg is not None
        if path in _NOT_SEARCHED:
            return self.err(where, f"is {_NOT_SEARCHED[path]}, not searched")
        if parts[0] == "tasks" and len(parts) < 3:
            return self.err(where, "search one option of an enabled task, e.g. tasks.da.weight")
        if parts[0] == "tasks" and parts[1] not in self.cfg.tasks:
            enabled = ", ".join(self.cfg.tasks)
            if parts[1] in TASK_CONFIGS:
                return self.err(where, f"task {parts[1]!r} is not enabled in base.tasks (searching it would "
                                       f"enable it); enabled: {enabled}")
            hint = _hint(parts[1], TASK_CONFIGS) or ";"
            return self.err(where, f"unknown task {parts[1]!r}{hint} enabled: {enabled}")
        if path in _BUILT_ONLY:
            reach = self.reachable("model.pretrained", when, specs)
            if reach is None or any(v is not None for v in reach):
                base = "" if any(s[0] == "model.pretrained" for s in specs) else "base."
                return self.err(where, f"has no effect with {base}model.pretrained set; "
                                       f"add when: {{model.pretrained: null}}")
        if path == "model.backbone" and isinstance(dist, CategoricalDistribution):
            for choice in dist.choices:
                try:
                    lookup(BACKBONES, choice, where=f"{self.source}: {where}")
                except UnknownNameError as e:
                    ok = False
                    self.errors.append(str(e))
        if ok:
            self._probe(spec, specs)

    def _probe(self, spec: Spec, specs: list[Spec]) -> None:
        """Set sample values into base and report what the trainer's validator rejects."""
        path, dist, when = spec
        found = {s[0]: s[1] for s in specs}
        fixed = {k: next((v for v in allowed if contains(found[k], v)), self._base_value(k))
                 for k, allowed in when.items() if k in found}
        contexts = [fixed]
        if path.startswith("weighting_args.") and "weighting" in found and "weighting" not in when:
            contexts = [{**fixed, "weighting": w} for w in self.reachable("weighting", when, specs) or []]
        seen: set[str] = set()
        for settings in contexts:
            for label, value in sample_points(dist):
                for key, msg in self._trainer_errors({**settings, path: value}):
                    if key in settings:
                        continue  # a condition's value: checked where that key is searched
                    if msg.startswith("cannot override: "):
                        line = msg.removeprefix("cannot override: ")
                    elif msg.startswith("unknown"):
                        line = msg if key == path else f"{key}: {msg}"
                    else:
                        line = f"the trainer rejects {label} {value!r}{'' if key == path else f' ({key})'}: {msg}"
                    if key not in seen:  # the first value the trainer rejects for each of its keys
                        seen.add(key)
                        self.err(f"search.{path}", line)

    def _trainer_errors(self, settings: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            config_from_dict(self.base_raw, source=_PROBE, overrides=settings)
        except ConfigError as e:
            problems = []
            for line in e.errors:
                key, _, message = line.removeprefix(f"{_PROBE}: ").partition(": ")
                problems.append((key, message))
            return problems
        return []

    # --- the other blocks ------------------------------------------------------------------

    def check_weights(self, raw: Any, specs: list[Spec]) -> tuple[tuple[str, ...], float, dict[str, tuple]]:
        if raw is None:
            return (), 0.0, {}
        if not isinstance(raw, Mapping):
            self.err("weights", f"must be a mapping: {{}} for every enabled task, or {{tasks: [..], min: 0.05, "
                                f"when: {{..}}}}, got {raw!r}")
            return (), 0.0, {}
        for key in raw:
            if key not in ("tasks", "min", "when"):
                self.err(f"weights.{key}", _unknown_key_message(str(key), ("tasks", "min", "when"), "weights"))
        floor = number(raw.get("min", 0.0))
        if floor is None or not 0.0 <= floor < 1.0:
            self.err("weights.min", f"must be a number in [0, 1), got {raw.get('min')!r}")
            floor = 0.0
        when = self.parse_when(raw.get("when"), "weights.when")
        if self.cfg is None or when is None:
            return (), floor, {}
        enabled = tuple(self.cfg.tasks)
        tasks = raw.get("tasks", list(enabled))
        if not isinstance(tasks, list) or len(set(map(str, tasks))) < 2 or len(set(map(str, tasks))) < len(tasks):
            self.err("weights.tasks", f"must list at least 2 different enabled tasks (one weight on the simplex "
                                      f"is constant), got {tasks!r}")
            return (), floor, when
        for t in tasks:
            if t not in enabled:
                self.err("weights.tasks", f"task {t!r} is not enabled in base.tasks; enabled: {', '.join(enabled)}")
            elif any(s[0] == f"tasks.{t}.weight" for s in specs):
                self.err(f"search.tasks.{t}.weight", "is also set by the weights block; search one or the other")
        self.check_when(when, "weights", specs, before=len(specs))
        reach = self.reachable("weighting", when, specs) or ()
        ignoring = [w for w in reach if w in WEIGHTING_OPTIONS and w not in USES_TASK_WEIGHTS]
        if ignoring:
            searched = any(s[0] == "weighting" for s in specs)
            fix = ("add when: {weighting: [fixed, pcgrad]}" if searched else
                   "remove the weights block, or set base.weighting to fixed or pcgrad")
            self.err("weights", f"has no effect with {'' if searched else 'base.'}weighting {ignoring[0]!r}: only "
                                f"{' and '.join(USES_TASK_WEIGHTS)} use tasks.<t>.weight; {fix}")
        return tuple(tasks), floor, when

    def check_datasets(self, raw: Any) -> tuple[tuple[str, ...], str]:
        default = tuple(self.cfg.data.pairs) if self.cfg else ()
        if raw is None:
            return default, "joint"
        if not isinstance(raw, Mapping):
            self.err("datasets", f"must be a mapping {{pairs: [en-de, ..], mode: joint | per_pair}}, got {raw!r}")
            return default, "joint"
        for key in raw:
            if key not in ("pairs", "mode"):
                self.err(f"datasets.{key}", _unknown_key_message(str(key), ("pairs", "mode"), "datasets"))
        pairs = raw.get("pairs", list(default))
        pairs = [pairs] if isinstance(pairs, str) else pairs
        if not isinstance(pairs, list) or not pairs:
            self.err("datasets.pairs", f"must be a non-empty list of pairs like en-de, got {pairs!r}")
            pairs = list(default)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, str) or not _PAIR.fullmatch(pair):
                self.err(f"datasets.pairs[{i}]", f"must look like 'en-de' (two lowercase language codes), "
                                                 f"got {pair!r}")
            elif pairs.index(pair) < i:
                self.err(f"datasets.pairs[{i}]", f"{pair!r} is listed twice")
        mode = raw.get("mode", "joint")
        if mode not in ("joint", "per_pair"):
            self.err("datasets.mode", f"must be one of joint, per_pair, got {mode!r}")
        return tuple(map(str, pairs)), str(mode)

    def check_objective(self, raw: Any) -> tuple[list[tuple[str, str]], str]:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            self.err("objective", f"must be a mapping {{metrics: [..], aggregator: mean}}, got {raw!r}")
            return [("objective", "maximize")], "mean"
        for key in raw:
            if key not in ("metrics", "aggregator"):
                self.err(f"objective.{key}", _unknown_key_message(str(key), ("metrics", "aggregator"), "objective"))
        items = raw.get("metrics", ["objective"])
        items = [items] if isinstance(items, (str, Mapping)) else items
        if not isinstance(items, list) or not items:
            self.err("objective.metrics", f"must be a non-empty list of metrics, got {items!r}")
            items = []
        metrics: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            if metric := self._metric(item, f"objective.metrics[{i}]", [m[0] for m in metrics]):
                metrics.append(metric)
        aggregator = raw.get("aggregator", "mean")
        try:
            lookup(AGGREGATORS, aggregator, where=f"{self.source}: objective.aggregator")
        except UnknownNameError as e:
            self.errors.append(str(e))
        except TypeError:  # an unhashable name
            self.err("objective.aggregator", f"must be a name, got {aggregator!r}")
        return metrics or [("objective", "maximize")], str(aggregator)

    def _metric(self, item: Any, where: str, seen: list[str]) -> tuple[str, str] | None:
        name, direction = item, None
        if isinstance(item, Mapping):
            for key in item:
                if key not in ("metric", "direction"):
                    self.err(f"{where}.{key}", _unknown_key_message(str(key), ("metric", "direction"), "a metric"))
            name, direction = item.get("metric"), item.get("direction")
        task, dot, metric = name.partition(".") if isinstance(name, str) else ("", "", "")
        if name != "objective" and (not dot or not task or not metric or "." in metric):
            return self.err(where, f"must be 'objective' (the trainer's own), 'task.metric' (e.g. 'da.pearson') or "
                                   f"{{metric: task.metric, direction: minimize}}, got {name!r}")
        if name in seen:
            return self.err(where, f"{name!r} is listed twice")
        if dot and self.cfg is not None and task not in self.cfg.tasks:
            return self.err(where, f"task {task!r} is not enabled in base.tasks; enabled: {', '.join(self.cfg.tasks)}")
        direction = direction or ("minimize" if metric in LOWER_IS_BETTER else "maximize")
        if direction not in ("maximize", "minimize"):
            return self.err(f"{where}.direction", f"must be maximize or minimize, got {direction!r}")
        return name, direction

    def check_sampler(self, raw: Any, specs: list[Spec], weight_tasks: tuple[str, ...],
                      n_metrics: int) -> tuple[str, dict[str, Any]]:
        floats = [path for path, dist, _ in specs if isinstance(dist, FloatDistribution) and dist.step is None]
        name, args, problems = read_sampler(raw, n_metrics=n_metrics, weights=bool(weight_tasks),
                                            floats_without_step=floats)
        for key, message in problems:
            self.err(key, message)
        return name, args

    def check_scheduler(self, raw: Any, metrics: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        name, args, problems = read_scheduler(raw, metrics=[m[0] for m in metrics])
        for key, message in problems:
            self.err(key, message)
        return name, args

    def check_enqueue(self, raw: Any, dists: dict[str, BaseDistribution]) -> tuple[dict[str, Any], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.err("enqueue", f"must be a list of {{dotted.key: value}} mappings, got {raw!r}")
            return ()
        out = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping) or not entry:
                self.err(f"enqueue[{i}]", f"must be a mapping {{dotted.key: value}} of searched keys, got {entry!r}")
                continue
            values = {}
            for key, value in entry.items():
                at, dist = f"enqueue[{i}].{key}", dists.get(str(key))
                if dist is None:
                    hint = _hint(str(key), dists) or ";"
                    self.err(at, f"not a searched parameter{hint} searched: {', '.join(dists)}")
                    continue
                numeric = not isinstance(dist, CategoricalDistribution) and not isinstance(value, bool)
                if numeric and (v := number(value)) is not None:  # YAML reads 1e-4 as a string
                    value = int(v) if isinstance(dist, IntDistribution) and v.is_integer() else v
                if contains(dist, value):
                    values[str(key)] = value
                else:
                    self.err(at, f"must be {describe(dist)}, got {value!r}")
            out.append(values)
        return tuple(out)

    def check_run(self, raw: Any, overrides: Mapping[str, Any], cls: type) -> Any:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            self.err("run", f"must be a mapping of command-line defaults, got {raw!r}")
            return None
        given = {k: str(v) if isinstance(v, PurePath) else v for k, v in overrides.items() if v is not None}
        errors: list[str] = []
        built = _build(cls, {**raw, **given}, "run", self.source, errors)
        for line in errors:
            self.errors.append(line + (" (from the command line)" if any(
                line.startswith(f"{self.source}: run.{k}:") for k in given) else ""))
        return None if errors else built


def dotted_get(tree: Mapping[str, Any], key: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; KeyError whose message names the closest keys."""
    node: Any = tree
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            valid = list(node) if isinstance(node, Mapping) else []
            raise KeyError(_unknown_key_message(part, valid, ".".join(parts[:i]) or "the config"))
        node = node[part]
    return node


def _hint(key: str, valid: Any) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show(values: tuple) -> str:
    return repr(values[0]) if len(values) == 1 else "[" + ", ".join(map(repr, values)) + "]"


__all__ = ["TOP_KEYS", "USES_TASK_WEIGHTS", "Context", "dotted_get"]
