"""Fixed loss weights: the baseline."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from mtl.weighting.base import Weighting


class Fixed(Weighting):
    """The config's loss weights as given; the hyperparameter search tunes them."""

    def weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """The config's weight for each task present in ``losses``."""
        return {t: losses[t].new_tensor(self.init_weights[t]) for t in self._present(losses)}
