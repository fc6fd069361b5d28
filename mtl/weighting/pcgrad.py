"""PCGrad: project away the conflicting part of each task's gradient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.weighting.base import Scale, apply_scale
from mtl.weighting.fixed import Fixed


def _flat_grad(output: Tensor, params: Sequence[nn.Parameter]) -> Tensor:
    """``d output / d params`` flattened into one vector; unused parameters give zeros."""
    grads = torch.autograd.grad(output, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])


def _project(grads: list[Tensor], order: list[int]) -> Tensor:
    """Sum of the tasks' gradients, each projected onto the normal plane of every other
    (original) gradient it conflicts with, visiting tasks in ``order``."""
    total = torch.zeros_like(grads[0])
    for i in order:
        g = grads[i].clone()
        for j in order:
            if j != i:
                dot = torch.clamp(g @ grads[j], max=0.0)  # 0 unless they conflict
                g -= dot / grads[j].square().sum().clamp_min(torch.finfo(g.dtype).tiny) * grads[j]
        total += g
    return total


class PCGrad(Fixed):
    """Gradient surgery on the shared parameters, with the config's loss weights.

    Yu, Kumar, Gupta, Levine, Hausman & Finn (2020), "Gradient Surgery for Multi-Task
    Learning". The task order is drawn with ``torch.randperm`` from the global torch RNG, so
    checkpointing that RNG state makes a resumed run identical. Parameters outside
    ``shared_params`` (the heads) get the plain weighted-sum gradient.

    Raises:
        ValueError: No shared parameter requires grad.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
    ) -> None:
        super().__init__(tasks, init_weights=init_weights, shared_params=shared_params)
        self._require_shared()

    def backward(
        self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None
    ) -> dict[str, float]:
        """Projected gradients into the shared parameters, plain ones into the rest."""
        w = self.weights(losses, step)
        if len(w) == 1:
            return super().backward(losses, step, scale=scale)
        params = self.shared_params
        grads = [_flat_grad(apply_scale(w[t] * losses[t], scale), params) for t in w]
        projected = _project(grads, torch.randperm(len(grads)).tolist())
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        apply_scale(torch.stack([w[t] * losses[t] for t in w]).sum(), scale).backward()  # heads; pollutes shared
        for p, old, new in zip(params, saved, projected.split([p.numel() for p in params])):
            new = new.view_as(p) if old is None else old + new.view_as(p)
            if p.grad is None:
                p.grad = new
            else:
                p.grad.copy_(new)
        return {t: float(v.detach()) for t, v in w.items()}
