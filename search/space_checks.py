"""The checks behind `search.space.load_space`: the base config and the searched keys.

Every check appends ``file: dotted.key: message`` lines to `Context.errors` and returns what
it could read, so one pass reports every problem of the file. Searched keys are checked
against the trainer's own validator by setting sample values into a copy of `base` (its
problems come back structured: `mtl.config_loader.Problem`). The other blocks are checked in
`search.space_blocks`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from optuna.distributions import CategoricalDistribution

from mtl.catalogue import TASKS
from mtl.config import ConfigError, ModelConfig, RunConfig, config_from_dict, to_dict
from mtl.config_loader import Problem, get_dotted, unknown_key
from search.distributions import Param, contains, describe, from_spec, sample_points

__all__ = ["TOP_KEYS", "Context"]

TOP_KEYS = ("base", "search", "weights", "datasets", "objective", "sampler", "scheduler", "enqueue", "warm_start",
            "run")
_SPEC_KEYS = {"float": ("type", "low", "high", "log", "step", "when"),
              "int": ("type", "low", "high", "log", "step", "when"),
              "categorical": ("type", "choices", "when")}
_NOT_SEARCHED = {"data.pairs": "set by datasets.pairs", "data.root": "set by run.data (or --data)"}
_MISSING = object()


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

    def problem(self, problem: Problem, prefix: str = "") -> None:
        self.errors.append(problem.under(prefix).line(self.source))

    def check_top(self, raw: Mapping[str, Any]) -> None:
        for key in raw:
            if key not in TOP_KEYS:
                self.problem(unknown_key(str(key), TOP_KEYS, "a space file"))

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
        return None

    # --- search ----------------------------------------------------------------------------

    def check_search(self, raw: Any) -> list[Param]:
        if raw is None:
            return []
        if not isinstance(raw, Mapping):
            self.err("search", f"must be a mapping of dotted.key -> spec, got {raw!r}")
            return []
        params = [p for path, spec in raw.items() if (p := self._spec(str(path), spec))]
        if self.cfg is not None:
            for i, param in enumerate(params):
                self._check_param(param, params, i)
        return params

    def _spec(self, path: str, spec: Any) -> Param | None:
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
            self.problem(unknown_key(str(key), _SPEC_KEYS[kind], f"a {kind} parameter", path=f"{where}.{key}"))
        when = self.parse_when(spec.get("when"), f"{where}.when")
        try:
            dist = from_spec(kind, spec)
        except ValueError as e:
            self.err(where, str(e))
            return None
        if unknown or when is None:
            return None
        self.bad_paths.discard(path)
        return Param(path, dist, when)

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

    def check_when(self, when: Mapping[str, tuple], where: str, params: list[Param], before: int) -> bool:
        """Each condition must name a parameter sampled before ``before``, or a base key, and be able to hold."""
        ok = True
        for key, allowed in when.items():
            problem = self._condition_problem(key, allowed, params, before)
            if problem:
                self.err(f"{where}.when.{key}", problem)
            ok = ok and problem is None and key not in self.bad_paths
        return ok

    def _condition_problem(self, key: str, allowed: tuple, params: list[Param], before: int) -> str | None:
        index = {p.path: j for j, p in enumerate(params)}
        if key in self.bad_paths:
            return None  # reported where it is defined
        if key in index and index[key] == before:
            return "a parameter cannot depend on itself"
        if key in index and index[key] > before:
            return (f"search.{key} comes later in the file; a condition reads the values sampled before it, "
                    f"so move search.{key} above")
        if key in index:
            param = params[index[key]]
            if any(contains(param.distribution, v) for v in allowed):
                return None
            if param.when and self.base_value(key) in allowed:
                return None
            unsampled = f" (or base {self.base_value(key)!r} when not sampled)" if param.when else ""
            return f"can never hold: search.{key} is {describe(param.distribution)}{unsampled}, got {_show(allowed)}"
        try:
            value = get_dotted(self.full, key)
        except KeyError as e:
            return str(e.args[0])
        if value not in allowed:
            return f"can never hold: base.{key} is {value!r} and is not searched, got {_show(allowed)}"
        return None

    def base_value(self, key: str) -> Any:
        try:
            return get_dotted(self.full, key)
        except KeyError:
            return _MISSING

    def reachable(self, key: str, when: Mapping[str, tuple], params: list[Param]) -> list[Any] | None:
        """Values ``key`` can have where ``when`` holds (None: a numeric searched key, not listed)."""
        found = {p.path: p for p in params}
        values = []
        if key in found:
            dist = found[key].distribution
            if not isinstance(dist, CategoricalDistribution):
                return None
            values = list(dist.choices)
        if (key not in found or found[key].when) and self.base_value(key) is not _MISSING:
            values.append(self.base_value(key))  # a conditional parameter may keep the base value
        return [v for v in values if v in when.get(key, (v,))]

    def _check_param(self, param: Param, params: list[Param], i: int) -> None:
        path, when = param.path, param.when
        where = f"search.{path}"
        ok = self.check_when(when, where, params, before=i)
        parts = path.split(".")
        assert self.cfg is not None
        if path in _NOT_SEARCHED:
            return self.err(where, f"is {_NOT_SEARCHED[path]}, not searched")
        if parts[0] == "tasks" and len(parts) < 3:
            return self.err(where, "search one option of an enabled task, e.g. tasks.da.weight")
        if parts[0] == "tasks" and parts[1] not in self.cfg.tasks:
            enabled = ", ".join(self.cfg.tasks)
            if parts[1] in TASKS:
                return self.err(where, f"task {parts[1]!r} is not enabled in base.tasks (searching it would "
                                       f"enable it); enabled: {enabled}")
            close = difflib.get_close_matches(parts[1], list(TASKS), n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            return self.err(where, f"unknown task {parts[1]!r};{hint} enabled: {enabled}")
        if parts[0] == "model" and parts[-1] in ModelConfig.BUILT_ONLY:
            reach = self.reachable("model.pretrained", when, params)
            if reach is None or any(v is not None for v in reach):
                base = "" if any(p.path == "model.pretrained" for p in params) else "base."
                return self.err(where, f"has no effect with {base}model.pretrained set; "
                                       f"add when: {{model.pretrained: null}}")
        if ok:
            self._probe(param, params)
        return None

    def _probe(self, param: Param, params: list[Param]) -> None:
        """Set sample values into base and report what the trainer's validator rejects."""
        path, dist, when = param.path, param.distribution, param.when
        found = {p.path: p.distribution for p in params}
        fixed = {k: next((v for v in allowed if contains(found[k], v)), self.base_value(k))
                 for k, allowed in when.items() if k in found}
        contexts = [fixed]
        if path.startswith("weighting_args.") and "weighting" in found and "weighting" not in when:
            contexts = [{**fixed, "weighting": w} for w in self.reachable("weighting", when, params) or []]
        seen: set[str] = set()
        for settings in contexts:
            for label, value in sample_points(dist):
                for problem in self._trainer_problems({**settings, path: value}):
                    key = problem.path
                    if key in settings:
                        continue  # a condition's value: checked where that key is searched
                    text = problem.message + (f"; {problem.hint}" if problem.hint else "")
                    if problem.kind in ("override", "unknown"):
                        line = text.removeprefix("cannot override: ") if key == path else f"{key}: {text}"
                    else:
                        line = f"the trainer rejects {label} {value!r}{'' if key == path else f' ({key})'}: {text}"
                    if key not in seen:  # the first value the trainer rejects for each of its keys
                        seen.add(key)
                        self.err(f"search.{path}", line)

    def _trainer_problems(self, settings: dict[str, Any]) -> list[Problem]:
        try:
            config_from_dict(self.base_raw, source="probe", overrides=settings)
        except ConfigError as e:
            return e.problems
        return []


def _show(values: tuple) -> str:
    return repr(values[0]) if len(values) == 1 else "[" + ", ".join(map(repr, values)) + "]"
