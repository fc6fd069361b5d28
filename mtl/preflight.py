"""What a run needs besides a valid config, checked before anything runs: the data of every
dataset and split, a loadable pretrained checkpoint. Light (no torch): a search's dry run asks too."""

from __future__ import annotations

from mtl.config import RunConfig
from mtl.config_loader import ConfigError, Problem
from mtl.data.parse import DataError
from mtl.model.backbones import BACKBONES
from mtl.model.checkpoints import pretrained_problem

__all__ = ["check_run", "run_problems"]


def run_problems(cfg: RunConfig) -> list[Problem]:
    """Every reason the run would stop before training: data missing for a pair or split, a
    pretrained checkpoint that cannot be loaded. Each a problem at the key that names the thing."""
    problems = []
    needs_da = cfg.features.sentence != "none" or cfg.features.needs_logprobs
    seen: set[str] = set()
    for i, pair in enumerate(cfg.data.pairs):
        for split in dict.fromkeys((cfg.data.train_split, cfg.data.eval_split)):
            try:
                cfg.data.source(pair).check(pair, split, need_da=needs_da)
            except DataError as e:
                message = str(e)
                if message not in seen:  # a missing root or split: said once, not per pair
                    seen.add(message)
                    key = f"data.datasets.{pair}" if pair in cfg.data.datasets else \
                        f"data.pairs[{i}]" if pair in message else "data.root"
                    problems.append(Problem(key, message))
    if cfg.model.pretrained:
        found = pretrained_problem(cfg.model.pretrained, model_type=BACKBONES[cfg.model.backbone].model_type,
                                   family=cfg.model.backbone)
        if found is not None:
            problems.append(Problem("model.pretrained", found))
    return problems


def check_run(cfg: RunConfig, *, source: str) -> None:
    """Raise every :func:`run_problems` problem at once.

    Raises:
        ConfigError: Lines ``source: key: what is missing``.
    """
    problems = run_problems(cfg)
    if problems:
        raise ConfigError(problems, source=source)
