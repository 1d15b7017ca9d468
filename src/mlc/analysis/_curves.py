"""Report part: how the networks trained — validation loss and accuracy against epoch, per task.

The curves say what the weights can hold: tasks whose networks sit on the same loss, epoch after
epoch, have learnt the same thing so far (for MLDS, often only how often each output bit is set),
and no classifier should be expected to tell them apart by their weights yet.
"""

from __future__ import annotations

from typing import Self

from mlc.analysis._data import MergedData
from mlc.analysis._plots import training_curves_figure
from mlc.analysis._section import ReportFigure, ReportTable, Section, percents

__all__ = ["TrainingCurves"]


class TrainingCurves:
    """Fitted: `curves_` (per task and epoch: networks still training, quartiles of the validation
    loss, median validation accuracy and training loss), `final_` (per task: networks, converged,
    median epochs, median final validation loss and accuracy), `section_`."""

    def run(self, data: MergedData) -> Self:
        history = data.history
        grouped = history.groupby(["task", "epoch"], sort=True)
        self.curves_ = grouped.agg(
            n_networks=("net_id", "size"),
            val_loss_q25=("val_loss", lambda v: v.quantile(0.25)),
            val_loss_median=("val_loss", "median"),
            val_loss_q75=("val_loss", lambda v: v.quantile(0.75)),
            val_accuracy_median=("val_accuracy", "median"),
            train_loss_median=("train_loss", "median"),
        ).reset_index()
        nets = data.networks
        self.final_ = nets.groupby("task", sort=True).agg(
            n_networks=("net_id", "size"), n_converged=("converged", "sum"),
            epochs_median=("epochs", "median"), final_val_loss_median=("final_val_loss", "median"),
            final_val_accuracy_median=("final_val_accuracy", "median"),
        ).reset_index().astype({"n_converged": int})
        self.section_ = self._section()
        return self

    def _section(self) -> Section:
        paragraphs = ["Median validation loss and bit accuracy of each task's networks after "
                      "every epoch (shaded: the middle half of the networks). Tasks whose curves "
                      "lie on top of each other have learnt the same thing so far; their weights "
                      "are not expected to tell them apart yet."]
        figures: tuple[ReportFigure, ...] = ()
        if self.curves_.empty:
            paragraphs.append("No figure: the datasets hold no training history.")
        else:
            caption = ("Validation loss (log scale) and bit accuracy against epoch, per task: "
                       "median and interquartile range over the networks.")
            figures = (ReportFigure("training_curves", training_curves_figure(self.curves_),
                                    caption),)
        return Section(
            "Training curves", tuple(paragraphs),
            tables=(
                ReportTable("training_final", self.final_,
                            "Per task: networks, converged, median epochs trained, median final "
                            "validation loss and accuracy.",
                            percents(self.final_, ["final_val_accuracy_median"])),
                ReportTable("training_curves", self.curves_,
                            "Per task and epoch: networks, validation-loss quartiles, median "
                            "validation accuracy and training loss.", inline=False),
            ),
            figures=figures)

