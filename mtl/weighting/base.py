"""The interface every task-weighting strategy implements."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

Scale = Callable[[Tensor], Tensor]


def apply_scale(loss: Tensor, scale: Scale | None) -> Tensor:
    """Return ``scale(loss)``, or ``loss`` itself when there is no scaler (AMP off)."""
    return loss if scale is None else scale(loss)


class Weighting(nn.Module, abc.ABC):
    """Turns per-task losses into one backward pass and reports the weights in force.

    A task with no labeled sample in the batch is absent from ``losses``. Gradients accumulate
    into ``.grad`` (micro-batches add up). Learnable weights are ordinary parameters that the
    trainer hands to its optimizer; all state needed to resume lives in ``state_dict()``.

    Args:
        tasks: Every enabled task, in order.
        init_weights: The config's loss weight per task; extra names are ignored.
        shared_params: Shared encoder parameters; gradient-based strategies use those that
            require grad.

    Raises:
        ValueError: ``tasks`` is empty or repeats a name, or a task's weight is missing,
            negative or not finite.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        init_weights: Mapping[str, float],
        shared_params: Sequence[nn.Parameter],
    ) -> None:
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"`tasks` must be non-empty and unique, but got {list(tasks)}")
        missing = [t for t in tasks if t not in init_weights]
        if missing:
            raise ValueError(f"`init_weights` must give every task a weight, but {missing} have none")
        bad = {t: w for t in tasks if not (math.isfinite(w := init_weights[t]) and w >= 0)}
        if bad:
            raise ValueError(f"loss weights must be finite and >= 0, but got {bad}")
        self.tasks = tuple(tasks)
        self.init_weights = {t: float(init_weights[t]) for t in self.tasks}
        self.shared_params = [p for p in shared_params if p.requires_grad]  # plain list: not registered

    def _present(self, losses: Mapping[str, Tensor]) -> list[str]:
        """The enabled tasks present in ``losses``, in task order; rejects unknown or no tasks."""
        unknown = sorted(set(losses) - set(self.tasks))
        if unknown:
            raise ValueError(f"losses must name enabled tasks {list(self.tasks)}, but got {unknown}")
        if not losses:
            raise ValueError("`losses` must hold at least one task, but got none")
        return [t for t in self.tasks if t in losses]

    def _require_shared(self) -> None:
        if not self.shared_params:
            raise ValueError(
                f"{type(self).__name__} needs at least one shared parameter that requires grad, but got none"
            )

    @classmethod
    def shared_parameters(cls, encoder: nn.Module) -> list[nn.Parameter]:
        """The shared parameters this strategy reads gradients of (all of the encoder's here);
        the trainer passes them as ``shared_params``."""
        return list(encoder.parameters())

    @abc.abstractmethod
    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """The weights in force at ``step`` for the tasks present in ``losses``."""

    def backward(
        self, losses: Mapping[str, Tensor], step: int, *, scale: Scale | None = None
    ) -> dict[str, float]:
        """Backpropagate ``sum(w[t] * losses[t])``, accumulating into ``.grad``.

        Args:
            losses: Task name -> scalar loss, for the tasks present in the batch.
            step: The optimizer step (strategies with schedules read it).
            scale: The AMP grad-scaler's scale function; identity when None.

        Returns:
            The weights in force, task -> float, for logging.
        """
        w = self.weights(losses, step)
        total = torch.stack([w[t] * losses[t] for t in w]).sum()
        apply_scale(total, scale).backward()
        return {t: float(v.detach()) for t, v in w.items()}
