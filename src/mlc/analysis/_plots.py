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

from mlc.analysis._twins import machine_of

__all__ = [
    "confusion_figure",
    "learning_curve_figure",
    "message_figure",
    "projection_figure",
    "task_colors",
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


def message_figure(message: str) -> Figure:
    """A small figure that says why the plot is missing, so every report has the same files."""
    figure = Figure(figsize=(6, 1.5))
    figure.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return figure


def confusion_figure(confusion: pd.DataFrame, title: str) -> Figure:
    """Rows true task, columns predicted; cells coloured by row fraction, labelled by count."""
    counts = confusion.to_numpy()
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(confusion)
    figure = Figure(figsize=(2.5 + 0.6 * k, 2 + 0.5 * k), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if fractions[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(k), confusion.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), confusion.index, fontsize=8)
    ax.set_xlabel("predicted task")
    ax.set_ylabel("true task")
    ax.set_title(title, fontsize=10)
    figure.colorbar(image, ax=ax, label="fraction of the true task")
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
