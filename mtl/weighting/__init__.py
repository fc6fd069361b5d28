"""Task-weighting strategies: one file per strategy, looked up by name in ``WEIGHTINGS``."""

from __future__ import annotations

from mtl.weighting.base import Weighting
from mtl.weighting.dwa import DWA
from mtl.weighting.fixed import Fixed
from mtl.weighting.gradnorm import GradNorm
from mtl.weighting.pcgrad import PCGrad
from mtl.weighting.uncertainty import Uncertainty

WEIGHTINGS: dict[str, type[Weighting]] = {
    "fixed": Fixed,
    "uncertainty": Uncertainty,
    "dwa": DWA,
    "gradnorm": GradNorm,
    "pcgrad": PCGrad,
}

__all__ = ["DWA", "WEIGHTINGS", "Fixed", "GradNorm", "PCGrad", "Uncertainty", "Weighting"]
