"""Homoscedastic-uncertainty weighting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.weighting.base import Scale, Weighting, apply_scale


class Uncertainty(Weighting):
    """Learned log-variances per task.

    Kendall, Gal & Cipolla (2018), "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics". Each task has a learnable log-variance ``s_t`` (init 0); the
    objective is ``sum(0.5 * exp(-s_t) * L_t + 0.5 * s_t)`` and the weight in force is
    ``0.5 * exp(-s_t)``. ``init_weights`` are ignored: the weights are learned from 0.5 each.
    A task absent from a batch contributes no gradient to its ``s_t``.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
    ) -> None:
        super().__init__(tasks, init_weights=init_weights, shared_params=shared_params)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """``0.5 * exp(-s_t)`` for each task present in ``losses`` (differentiable in ``s``)."""
        present = set(self._present(losses))
        return {t: 0.5 * torch.exp(-self.log_vars[i]) for i, t in enumerate(self.tasks) if t in present}

    def backward(
        self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None
    ) -> dict[str, float]:
        """Backpropagate ``sum(0.5 * exp(-s_t) * L_t + 0.5 * s_t)`` into the model and ``s``."""
        w = self.weights(losses, step)
        total = torch.stack([w[t] * losses[t] + 0.5 * self.log_vars[self.tasks.index(t)] for t in w]).sum()
        apply_scale(total, scale).backward()
        return {t: float(v.detach()) for t, v in w.items()}
