"""Finalize a study: its top configs retrained on all the training data with several seeds, as Ray
tasks with a trial's resources, then ensembled into a model to ship (`python -m search.finalize`
and `search.run --finalize` are its command lines).

``DIR/members/r<rank>-t<trial>-s<seed>/`` is each member's run directory (`mtl.rundir`),
``DIR/ensemble/`` the ensemble folder (`mtl.ensemble`; ``mtl evaluate`` and ``mtl predict``
take it as ``--run``), ``DIR/finalize.json`` the plan. The study records what was finalized
(its ``finalized`` attribute). Finalizing again after a crash keeps the finished members,
resumes a member cut short from its last evaluation and rebuilds the ensemble.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtl.errors import RunFailed, SetupError

__all__ = ["Member", "check_out", "finalize", "plan_members", "summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One retraining: a ranked config with one seed."""

    name: str
    rank: int
    trial: int
    seed: int
    config: dict[str, Any]


def plan_members(study: Any, *, top: int, seeds: int, train_samples: int | None, aggregator: str | None = None,
                 data_root: str | None = None) -> list[Member]:
    """The members: each of the ``top`` best configs with ``seeds`` seeds (its own, then the next
    ones), trained on ``train_samples`` segments per dataset (None: all), evaluated on all of dev.

    Raises:
        ReportError: ``top`` or ``seeds`` below 1, no complete trial, or a stored config that
            no longer validates.
    """
    from mtl.config import ConfigError, config_from_dict
    from reports.export import ranked_trials, trial_config
    from reports.extract import ReportError

    if top < 1 or seeds < 1:
        raise ReportError(f"--top and --seeds must be 1 or more, got {top} and {seeds}")
    ranked = ranked_trials(study, aggregator=aggregator)
    if not ranked:
        raise ReportError(f"study {study.study_name!r} has no complete trial: nothing to finalize")
    members = []
    rows = _RowCounter()
    for rank, trial in enumerate(ranked[:top], 1):
        config, per_pair = trial_config(study, trial)
        if data_root is not None:
            config["data"]["root"] = data_root
        first = int(config["train"]["seed"])
        for seed in range(first, first + seeds):
            member = copy.deepcopy(config)
            member["train"]["seed"] = seed
            member["data"].update(max_train_samples=train_samples, max_eval_samples=None)
            try:
                config_from_dict(member, source=f"study {study.study_name}: trial {trial.number}")
            except ConfigError as e:
                raise ReportError(f"trial {trial.number}'s config no longer validates:\n" + "\n".join(e.errors)) from e
            member["train"]["eval_every"] = member_eval_every(config, member, per_pair=per_pair, rows=rows)
            members.append(Member(f"r{rank}-t{trial.number}-s{seed}", rank, trial.number, seed, member))
    return members


def member_eval_every(trial: dict[str, Any], member: dict[str, Any], *, per_pair: bool,
                      rows: Callable[[dict[str, Any], str], int]) -> int:
    """The member's ``train.eval_every``: the trial's, scaled so that the member evaluates as
    often per epoch as the trial did (a member on 6x the data would otherwise evaluate all of
    dev 6x as often, and keep its best checkpoint among 6x as many). A config that fixes
    ``train.max_steps`` keeps its ``eval_every``.

    ``rows(config, pair)`` counts the pair's training segments the config reads; a per_pair
    trial trained one model per pair (on a pair's rows), the member trains one on all of them.
    """
    every = int(trial["train"]["eval_every"])
    if trial["train"].get("max_steps"):
        return every
    pairs = list(member["data"]["pairs"])
    member_rows = sum(rows(member, p) for p in pairs)
    trial_rows = sum(rows(trial, p) for p in pairs) / (len(pairs) if per_pair else 1)
    return max(1, round(every * member_rows / trial_rows)) if trial_rows else every


class _RowCounter:
    """``rows(config, pair)`` for `member_eval_every`: the pair's training segments (read once
    per dataset), capped by the config's ``data.max_train_samples``."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[str, str], int] = {}

    def __call__(self, config: dict[str, Any], pair: str) -> int:
        from mtl.config import config_from_dict

        data = config_from_dict(config, source=pair).data
        source = data.source(pair)
        key = (source.identity(pair, data.train_split), pair)
        if key not in self.sizes:
            self.sizes[key] = len(source.read(pair, data.train_split))
        limit = data.max_train_samples
        return self.sizes[key] if limit is None else min(limit, self.sizes[key])


def train_member(config: dict[str, Any], out_dir: str, resume: bool) -> None:
    """Train one member into its run directory (a Ray task); its error goes to error.json too."""
    from mtl.config import config_from_dict
    from mtl.rundir import RunDir
    from mtl.train import train
    from search.trial import write_error

    run = RunDir(out_dir)
    run.error.unlink(missing_ok=True)
    try:
        train(config_from_dict(config, source=out_dir), out_dir=out_dir, resume=resume)
    except Exception as e:
        write_error(run, e)
        raise


def ensemble_member_runs(member_dirs: list[str], out: str, data_root: str | None) -> None:
    """Build the ensemble folder from the members' runs (a Ray task)."""
    from mtl.ensemble_dir import build_ensemble

    build_ensemble(member_dirs, out, split="dev", root=data_root)


def finalize(study: Any, members: Sequence[Member], *, out: str | Path, tune: Any, cpus: float, gpus: float,
             overwrite: bool = False, data_root: str | None = None,
             say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Train the members (as Ray tasks; ``tune`` is the joined `search.tune`), then build and
    record the ensemble; ``say`` hears the progress, a line at a time. Returns the ensemble's
    metrics.json.

    Raises:
        SetupError: A member folder holds a run of another config (and not ``overwrite``).
        RunFailed: A member failed (the others are kept; a rerun retries it).
    """
    from mtl.files import write_json
    from mtl.rundir import RunDir

    out = Path(out)
    dirs = {m.name: RunDir(out / "members" / m.name) for m in members}
    taken = check_out(members, out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "finalize.json", {"study": study.study_name, "members": [
        {k: v for k, v in asdict(m).items() if k != "config"} for m in members]})
    say(f"finalizing {len(members)} members into {out}/members (Ray tasks of {cpus:g} CPU, {gpus:g} GPU)")
    for m in {m.trial: m for m in members}.values():
        steps = m.config["train"].get("max_steps")
        if steps:
            say(f"  note: trial {m.trial}'s config fixes train.max_steps={steps}: its members train {steps} steps "
                f"whatever the data (a config with train.epochs trains that many epochs of it)")
        else:
            say(f"  trial {m.trial}'s members evaluate every {m.config['train']['eval_every']} steps "
                f"(as often per epoch as the trial did)")
    done: list[str] = []

    def on_done(name: str, error: BaseException | None) -> None:
        done.append(name)
        what = f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}" if error else "done"
        say(f"  member {name}: {what} ({len(done)}/{len(members)})")

    calls = [(m.name, train_member, (m.config, str(dirs[m.name].path), m.name not in taken)) for m in members]
    errors = tune.run_tasks(calls, cpus=cpus, gpus=gpus, on_done=on_done)
    failed = {name: e for name, e in errors.items() if e is not None}
    if failed:
        raise RunFailed(f"{len(failed)} of {len(members)} members failed ({', '.join(failed)}; see error.json in "
                        f"each); run the same command again to retry them, finished members are kept")
    ensemble = out / "ensemble"
    member_dirs = [str(dirs[m.name].path) for m in members]
    errors = tune.run_tasks([("ensemble", ensemble_member_runs, (member_dirs, str(ensemble), data_root))],
                            cpus=cpus, gpus=gpus)
    if errors["ensemble"] is not None:
        raise errors["ensemble"]
    result = RunDir(ensemble).read_json("metrics.json") or {}
    record = study.user_attrs.get("finalized") or {}
    scored = {m.name: (dirs[m.name].read_json("metrics.json") or {}).get("objective") for m in members}
    record[str(out.resolve())] = {
        "members": {m.name: {"rank": m.rank, "trial": m.trial, "seed": m.seed, "objective": scored[m.name]}
                    for m in members},
        "train_samples": members[0].config["data"]["max_train_samples"],
        "ensemble": {"run": str(ensemble.resolve()), "objective": result.get("objective")}}
    study.set_user_attr("finalized", record)
    return result


def check_out(members: Sequence[Member], out: Path, *, overwrite: bool) -> list[str]:
    """The members whose folders hold runs of other configs (retrained from scratch with
    ``overwrite``).

    Raises:
        SetupError: There are such members and not ``overwrite``.
    """
    from mtl.config import config_from_dict
    from mtl.rundir import RunDir
    from mtl.train import holds_other_config

    if out.exists() and not out.is_dir():
        raise SetupError(f"--out {out}: is a file, expected a folder for members/ and ensemble/")
    taken = [m.name for m in members
             if holds_other_config(RunDir(out / "members" / m.name), config_from_dict(m.config, source=m.name))]
    if taken and not overwrite:
        raise SetupError(f"--out {out}: members {', '.join(taken)} hold runs of other configs (another "
                         f"--train-samples, or a study that changed); use another --out, or --overwrite to "
                         f"retrain them")
    return taken


def summary(result: dict[str, Any]) -> list[str]:
    """Per dataset and sentence-or-tag task: the ensemble's primary metric against its best member's."""
    from mtl.catalogue import TASKS

    lines = []
    for pair, tasks in (result.get("metrics") or {}).items():
        for task, values in tasks.items():
            primary = TASKS[task].primary
            if primary is None or values.get(primary) is None:
                continue
            best_name, best = None, None
            for name, member in (result.get("members") or {}).items():
                value = (((member.get("metrics") or {}).get(pair) or {}).get(task) or {}).get(primary)
                better = TASKS[task].metrics[primary] == "maximize"
                if value is not None and (best is None or (value > best if better else value < best)):
                    best_name, best = name, value
            if best is None:
                continue
            wins = values[primary] > best if TASKS[task].metrics[primary] == "maximize" else values[primary] < best
            lines.append(f"{pair} {task}.{primary}: ensemble {values[primary]:.4f}, best member {best_name} "
                         f"{best:.4f} ({'beats it' if wins else 'does not beat it'})")
    return lines
