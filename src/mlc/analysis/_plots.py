"""The report's figures, drawn on bare matplotlib Figures (Agg canvas, no pyplot state).

Using `Figure` directly instead of pyplot means no global backend or open-figure registry: the report
can run inside a server or a notebook without touching their matplotlib settings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from mlc.analysis._twins import machine_of

__all__ = [
    "confusion_figure",
    "learning_curve_figure",
    "projection_figure",
    "task_colors",
    "training_curves_figure",
]


def task_colors(tasks: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A colour per task; a DS1 machine and its DS2 twin get the dark and light shade of one hue."""
    palette = colormaps["tab20"].colors
    groups: dict[str, int] = {}
    colors = {}
    for task in sorted(tasks):
        machine = machine_of(task) or task
        group = groups.setdefault(machine, len(groups))
        shade = 1 if task.endswith("Modified") else 0
        colors[task] = palette[(2 * group + shade) % len(palette)]
    return colors


def confusion_figure(confusion: pd.DataFrame, title: str) -> Figure:
    """Rows true task, columns predicted, each cell the share of its true task (scikit-learn's
    ConfusionMatrixDisplay; it imports pyplot but draws on this bare Figure)."""
    counts = confusion.to_numpy()
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(confusion)
    figure = Figure(figsize=(3 + 0.6 * k, 2.2 + 0.5 * k), layout="constrained")
    ax = figure.add_subplot()
    display = ConfusionMatrixDisplay(fractions, display_labels=[str(c) for c in confusion.columns])
    display.plot(ax=ax, cmap="Blues", values_format=".0%", xticks_rotation=45,
                 im_kw={"vmin": 0, "vmax": 1}, text_kw={"fontsize": 7})
    ax.tick_params(labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_xlabel("predicted task")
    ax.set_ylabel("true task")
    ax.set_title(title, fontsize=10)
    return figure


def learning_curve_figure(curve: pd.DataFrame, chance: dict[str, float]) -> Figure:
    """Accuracy (mean ± std over repeats) against training networks per class, one line per
    question; dotted lines mark each question's chance level."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for i, (question, rows) in enumerate(curve.groupby("question", sort=False)):
        color = colormaps["tab10"].colors[i % 10]
        ax.errorbar(rows["n_train_per_class"], rows["accuracy_mean"], yerr=rows["accuracy_std"],
                    marker="o", capsize=3, color=color, label=question)
        ax.axhline(chance[question], color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    sizes = sorted(curve["n_train_per_class"].unique())
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training networks per class")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    return figure


def projection_figure(coords: np.ndarray, tasks: np.ndarray, title: str,
                      axis_labels: tuple[str, str]) -> Figure:
    """A 2-D scatter `coords` `[n, 2]`, coloured by task."""
    colors = task_colors(list(np.unique(tasks)))
    figure = Figure(figsize=(7, 5.5), layout="constrained")
    ax = figure.add_subplot()
    for task, color in colors.items():
        mine = tasks == task
        ax.scatter(coords[mine, 0], coords[mine, 1], s=6, color=color, label=task, alpha=0.7)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=10)
    if len(colors) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    return figure


def training_curves_figure(curves: pd.DataFrame) -> Figure:
    """Two panels against epoch, one line per task: median validation loss (log scale) with its
    interquartile band, and median validation accuracy. `curves` is `TrainingCurves.curves_`."""
    colors = task_colors(list(curves["task"].unique()))
    figure = Figure(figsize=(9, 4), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for task, rows in curves.groupby("task", sort=True):
        color = colors[str(task)]
        loss.plot(rows["epoch"], rows["val_loss_median"], color=color, label=str(task))
        loss.fill_between(rows["epoch"], rows["val_loss_q25"], rows["val_loss_q75"], color=color,
                          alpha=0.2, linewidth=0)
        accuracy.plot(rows["epoch"], rows["val_accuracy_median"], color=color)
    loss.set_yscale("log")
    loss.set_ylabel("validation loss")
    accuracy.set_ylabel("validation bit accuracy")
    for ax in (loss, accuracy):
        ax.set_xlabel("epoch")
    figure.legend(fontsize=7, loc="outside right center")
    return figure
