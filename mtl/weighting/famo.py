"""FAMO: fast adaptive multitask optimization."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.weighting.base import Scale, Weighting

EPS = 1e-8  # added to each loss before its log (the paper's min-loss shift, with min 0)
BETAS = (0.9, 0.999)  # Adam on the task logits, as the reference implementation


class FAMO(Weighting):
    """Weights that make every task's loss fall at the same rate, at O(1) space and time per step.

    Liu, Liu, Jin, Stone & Liu (2023), "FAMO: Fast Adaptive Multitask Optimization", NeurIPS.
    Task logits ``xi`` give ``z = softmax(xi)``; the model descends ``sum_t z_t log L_t / c``
    with ``c = sum_t z_t / L_t``, so the weight in force on ``L_t`` is ``z_t / (c L_t)`` (times
    the number of tasks present here, so that the weights sum to it as fixed weights of 1 do).
    One backward pass, no per-task gradient. After each optimizer step the logits take one Adam
    step (learning rate ``w_lr``, L2 ``gamma``) along the softmax's Jacobian times
    ``delta_t = log L_t(before) - log L_t(after)``: tasks whose loss fell least gain weight.

    The paper measures "after" on the same batch with a second forward pass; here the next
    optimizer step's losses (a new batch; all micro-batches of a step averaged) stand in for it,
    so the logits move one step later and the strategy costs no extra forward pass. A task
    absent from either step leaves its logit's gradient at 0. ``init_weights`` are ignored.

    Args:
        gamma: L2 regularisation of the logits (pulls the weights back toward equal).
        w_lr: Learning rate of the logits.

    Raises:
        ValueError: ``gamma < 0`` or ``w_lr <= 0``.
    """

    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    adam_steps: Tensor
    step_sum: Tensor
    step_count: Tensor
    step_index: Tensor
    last_log: Tensor

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
        gamma: float = 0.01,
        w_lr: float = 0.025,
    ) -> None:
        if not gamma >= 0:
            raise ValueError(f"`gamma >= 0` must hold, but got gamma={gamma}")
        if not w_lr > 0:
            raise ValueError(f"`w_lr > 0` must hold, but got w_lr={w_lr}")
        super().__init__(tasks, init_weights=init_weights, shared_params=shared_params)
        self.gamma, self.w_lr = float(gamma), float(w_lr)
        k = len(self.tasks)
        # buffers, not parameters: the logits have their own update, not the trainer's optimizer
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("exp_avg", torch.zeros(k))
        self.register_buffer("exp_avg_sq", torch.zeros(k))
        self.register_buffer("adam_steps", torch.tensor(0))
        self.register_buffer("step_sum", torch.zeros(k))  # the losses of the step being accumulated
        self.register_buffer("step_count", torch.zeros(k))
        self.register_buffer("step_index", torch.tensor(-1))
        self.register_buffer("last_log", torch.full((k,), math.nan))  # log loss of the step before

    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """``n * z_t / (c L_t)`` over the ``n`` tasks present, from the logits in force (detached)."""
        present = self._present(losses)
        idx = [self.tasks.index(t) for t in present]
        z = torch.softmax(self.logits[idx], dim=0)
        d = torch.stack([losses[t].detach().float() for t in present]).to(z) + EPS
        w = len(present) * (z / d) / (z / d).sum()
        return {t: w[i] for i, t in enumerate(present)}

    def backward(self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None) -> dict[str, float]:
        """Move the logits when a new optimizer step begins, then the weighted-sum backward."""
        present = self._present(losses)
        if step != int(self.step_index):
            self._finish_step()
            self.step_index.fill_(step)
        with torch.no_grad():
            for t in present:
                i = self.tasks.index(t)
                self.step_sum[i] += losses[t].detach().float().to(self.step_sum)
                self.step_count[i] += 1
        return super().backward(losses, step, scale=scale)

    @torch.no_grad()
    def _finish_step(self) -> None:
        """The step just ended: one Adam step of the logits on how much each log-loss fell."""
        if int(self.step_index) < 0:
            return
        now = torch.where(self.step_count > 0, (self.step_sum / self.step_count.clamp_min(1) + EPS).log(),
                          torch.full_like(self.step_sum, math.nan))
        delta = self.last_log - now
        delta = torch.where(delta.isfinite(), delta, torch.zeros_like(delta))
        if bool((delta != 0).any()):
            z = torch.softmax(self.logits, dim=0)
            grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits  # softmax Jacobian^T delta, plus L2
            self.adam_steps += 1
            n = int(self.adam_steps)
            self.exp_avg.mul_(BETAS[0]).add_(grad, alpha=1 - BETAS[0])
            self.exp_avg_sq.mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
            denom = (self.exp_avg_sq / (1 - BETAS[1] ** n)).sqrt().add(1e-8)
            self.logits.addcdiv_(self.exp_avg, denom, value=-self.w_lr / (1 - BETAS[0] ** n))
        self.last_log.copy_(now)
        self.step_sum.zero_()
        self.step_count.zero_()
