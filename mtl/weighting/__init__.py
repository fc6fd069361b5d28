"""Task-weighting strategies: one file each, one row of ``WEIGHTINGS`` each.

The rows import no torch: validating a config or a search space reads them; a run imports the
class its row names. Adding a strategy is one file here and one row below.
"""

from __future__ import annotations

from mtl.weighting.registry import Option, Strategy

WEIGHTINGS: dict[str, Strategy] = {
    "fixed": Strategy("mtl.weighting.fixed:Fixed", reads_task_weights=True,
                      paper="the config's loss weights as given"),
    "uncertainty": Strategy("mtl.weighting.uncertainty:Uncertainty", paper="Kendall, Gal & Cipolla 2018"),
    "dwa": Strategy("mtl.weighting.dwa:DWA", paper="Liu, Johns & Davison 2019",
                    options={"temperature": Option(float, low=0, low_open=True, doc="softmax temperature"),
                             "period": Option(int, low=1, doc="steps per averaging period")}),
    "gradnorm": Strategy("mtl.weighting.gradnorm:GradNorm", paper="Chen et al. 2018",
                         options={"alpha": Option(float, low=0, doc="pull toward equal training rates")}),
    "pcgrad": Strategy("mtl.weighting.pcgrad:PCGrad", reads_task_weights=True, paper="Yu et al. 2020"),
    "famo": Strategy("mtl.weighting.famo:FAMO", paper="Liu et al. 2023 (NeurIPS)",
                     options={"gamma": Option(float, low=0, doc="L2 regularisation of the task logits"),
                              "w_lr": Option(float, low=0, low_open=True, doc="learning rate of the task logits")}),
}
"""Strategy name -> its row."""

__all__ = ["WEIGHTINGS", "Option", "Strategy"]
