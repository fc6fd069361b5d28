"""GradNorm: balance tasks by the norm of their gradients on the shared layer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.weighting.base import Scale, Weighting, apply_scale


def _grad_norm(output: Tensor, params: Sequence[nn.Parameter]) -> Tensor:
    """``||d output / d params||``, differentiable (create_graph) so it depends on the weights."""
    grads = torch.autograd.grad(output, params, retain_graph=True, create_graph=True, allow_unused=True)
    used = [torch.linalg.vector_norm(g) for g in grads if g is not None]
    if not used:
        raise ValueError("GradNorm needs every task's loss to depend on the shared parameters; one does not")
    return torch.linalg.vector_norm(torch.stack(used))


class GradNorm(Weighting):
    """Learned weights that equalise the tasks' gradient norms, scaled by their training rates.

    Chen, Badrinarayanan, Lee & Rabinovich (2018), "GradNorm: Gradient Normalization for
    Adaptive Loss Balancing in Deep Multitask Networks". Weights in force are
    ``K * softplus(raw) / sum(softplus(raw))`` over all enabled tasks (they sum to K and start
    equal). ``L_t(0)`` is recorded the first step a task appears. ``init_weights`` are ignored.

    Args:
        alpha: Strength of the pull toward equal training rates (0: equal gradient norms).

    Raises:
        ValueError: ``alpha < 0``, or no shared parameter requires grad.
    """

    initial_losses: Tensor

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
        alpha: float = 1.5,
    ) -> None:
        if not alpha >= 0:
            raise ValueError(f"`alpha >= 0` must hold, but got alpha={alpha}")
        super().__init__(tasks, init_weights=init_weights, shared_params=shared_params)
        self._require_shared()
        self.alpha = float(alpha)
        self.raw_weights = nn.Parameter(torch.zeros(len(self.tasks)))
        self.register_buffer("initial_losses", torch.full((len(self.tasks),), math.nan))

    @classmethod
    def shared_parameters(cls, encoder: nn.Module) -> list[nn.Parameter]:
        """The encoder's top layer: the paper measures gradient norms on the last shared layer."""
        return encoder.last_layer_parameters()  # type: ignore[operator]

    def _all_weights(self) -> Tensor:
        soft = F.softplus(self.raw_weights)
        return len(self.tasks) * soft / soft.sum()

    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """The normalised weight of each task present in ``losses`` (differentiable in ``raw``)."""
        present = set(self._present(losses))
        w = self._all_weights()
        return {t: w[i] for i, t in enumerate(self.tasks) if t in present}

    def backward(
        self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None
    ) -> dict[str, float]:
        """Accumulate the GradNorm loss's gradient into ``raw_weights``, then backpropagate
        ``sum(w_t.detach() * L_t)`` into the model."""
        present = self._present(losses)
        idx = torch.tensor([self.tasks.index(t) for t in present], device=self.raw_weights.device)
        w = self._all_weights()[idx]
        loss = torch.stack([losses[t] for t in present])
        with torch.no_grad():
            first = self.initial_losses[idx]
            self.initial_losses[idx] = torch.where(first.isnan(), loss.detach().to(first), first)
        norms = torch.stack(
            [_grad_norm(apply_scale(w[i] * loss[i], scale), self.shared_params) for i in range(len(present))]
        )
        rate = loss.detach() / self.initial_losses[idx]
        rate = torch.where(rate.isfinite(), rate, torch.ones_like(rate))  # zero L_t(0): rate 1
        target = (norms.mean() * (rate / rate.mean()) ** self.alpha).detach()
        (grad,) = torch.autograd.grad((norms - target).abs().sum(), self.raw_weights, retain_graph=True)
        if self.raw_weights.grad is None:
            self.raw_weights.grad = grad
        else:
            self.raw_weights.grad += grad
        apply_scale((w.detach() * loss).sum(), scale).backward()
        return {t: float(v) for t, v in zip(present, w.detach())}
