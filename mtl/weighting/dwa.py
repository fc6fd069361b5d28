"""Dynamic Weight Average."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.weighting.base import Scale, Weighting


class DWA(Weighting):
    """Weights from how fast each task's loss has been falling.

    Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention". The paper
    averages losses per epoch; we use periods of ``period`` steps. In period ``p``,
    ``w_t = K * softmax_t(r_t / temperature)`` with ``r_t`` the task's average loss over period
    ``p-1`` divided by its average over ``p-2``; all weights are 1 in the first two periods.
    Only steps where a task is present count toward its average; a task with no sample in
    either period (or a zero average) keeps ``r_t = 1``. ``init_weights`` are ignored.

    Args:
        temperature: Softmax temperature; larger is closer to equal weights.
        period: Steps per averaging period (the paper's epoch).

    Raises:
        ValueError: ``temperature <= 0`` or ``period < 1``.
    """

    period_index: Tensor
    loss_sum: Tensor
    loss_count: Tensor
    avg_prev: Tensor
    avg_prev2: Tensor

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
        temperature: float = 2.0,
        period: int = 50,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"`temperature > 0` must hold, but got temperature={temperature}")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"`period` must be an integer >= 1, but got period={period!r}")
        super().__init__(tasks, init_weights=init_weights, shared_params=shared_params)
        self.temperature = float(temperature)
        self.period = period
        k = len(self.tasks)
        self.register_buffer("period_index", torch.tensor(0))
        self.register_buffer("loss_sum", torch.zeros(k))  # current period
        self.register_buffer("loss_count", torch.zeros(k))
        self.register_buffer("avg_prev", torch.full((k,), math.nan))  # period p-1
        self.register_buffer("avg_prev2", torch.full((k,), math.nan))  # period p-2

    @torch.no_grad()
    def _advance(self, step: int) -> None:
        """Roll the period averages forward to the period holding ``step``."""
        p, current = step // self.period, int(self.period_index)
        if p < current:
            raise ValueError(
                f"`step` must not go back to an earlier period, but got step={step} after period {current}"
            )
        for _ in range(min(p - current, 2)):  # a skipped period has no samples: NaN averages
            self.avg_prev2.copy_(self.avg_prev)
            self.avg_prev.copy_(self.loss_sum / self.loss_count)  # 0/0 = NaN where no sample
            self.loss_sum.zero_()
            self.loss_count.zero_()
        self.period_index.fill_(p)

    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """``K * softmax(r / T)`` over all tasks, for the tasks present in ``losses``."""
        present = set(self._present(losses))
        self._advance(step)
        ratio = self.avg_prev / self.avg_prev2
        ratio = torch.where(ratio.isfinite(), ratio, torch.ones_like(ratio))
        w = len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0)
        return {t: w[i] for i, t in enumerate(self.tasks) if t in present}

    def backward(
        self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None
    ) -> dict[str, float]:
        """The weighted-sum backward, then record the raw losses for this period's averages."""
        in_force = super().backward(losses, step, scale=scale)
        with torch.no_grad():
            for i, t in enumerate(self.tasks):
                if t in losses:
                    self.loss_sum[i] += losses[t].detach().to(self.loss_sum)
                    self.loss_count[i] += 1
        return in_force
