"""`analyze`: run every report part on one or more datasets and write the report.

The parts run in a fixed order — data overview, training curves, trojan detection, task
identification, learning curve, CPU vs GPU, projections, baselines, hyperparameters from weights
(sweeps) — sharing one set of feature matrices, computed once. The baselines part only reassembles
results parts 1 and 2 already computed on all three feature sets; the headline, shown first, restates
part 2's answer in one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import mlc
from mlc.analysis._baselines import Baselines
from mlc.analysis._curves import TrainingCurves
from mlc.analysis._data import DatasetLike, MergedData, merge_datasets, open_datasets
from mlc.analysis._device import DeviceComparison
from mlc.analysis._features import FEATURE_SETS, RAW_WEIGHTS, feature_matrices
from mlc.analysis._headline import Headline
from mlc.analysis._identify import TaskIdentification
from mlc.analysis._learning import LearningCurve
from mlc.analysis._overview import DataOverview, selection_line
from mlc.analysis._progress import report_progress
from mlc.analysis._projections import Projections
from mlc.analysis._render import HTML_FILE, MARKDOWN_FILE, write_report
from mlc.analysis._section import Section, Step
from mlc.analysis._suite import MIN_PER_CLASS
from mlc.analysis._sweeps import SweepPrediction
from mlc.analysis._trojan import TrojanDetection
from mlc.errors import ConfigError

__all__ = ["AnalysisReport", "analyze", "check_report_folder"]

_N_PARTS = 9  # features, seven parts, writing


@dataclass(frozen=True, eq=False)
class AnalysisReport:
    """What `analyze` wrote: `files` maps each file name to its path; `tables` maps each table's
    name (its CSV's stem) to the DataFrame written there."""

    out_dir: Path
    files: dict[str, Path]
    tables: dict[str, pd.DataFrame]

    def __repr__(self) -> str:  # the tables' reprs ran to screens of text in a notebook
        return (f"AnalysisReport({str(self.out_dir)!r}, {len(self.files)} files, "
                f"tables {sorted(self.tables)})")

    @property
    def markdown(self) -> Path:
        return self.files[MARKDOWN_FILE]

    @property
    def html(self) -> Path:
        return self.files[HTML_FILE]


def analyze(datasets: Sequence[DatasetLike | Path | str] | DatasetLike | MergedData | Path | str,
            out_dir: Path | str, *,
            max_per_class: int = 1000, random_state: int = 0, show_progress: bool = True,
            converged_only: bool = False, n_folds: int = 5) -> AnalysisReport:
    """Analyse the datasets (opened, or their directories; or data merged already) and write the
    report under `out_dir`.

    `max_per_class` caps the networks per class in every question (the original used 1,000);
    `converged_only` leaves out networks that did not converge; `n_folds` is the cross-validation
    fold count (5 makes the validation split the original's 80/20).
    """
    if max_per_class < MIN_PER_CLASS:
        raise ConfigError(f"max_per_class must be at least {MIN_PER_CLASS}: a task or device with fewer "
                          f"networks is not classified, so every question would say 'too few networks'")
    check_report_folder(Path(out_dir))
    data = (datasets if isinstance(datasets, MergedData)
            else merge_datasets(_opened(datasets), max_per_class=max_per_class,
                                converged_only=converged_only))
    _make_report_folder(Path(out_dir))  # once the data is read, before the minutes of analysis
    with report_progress(_N_PARTS, enabled=show_progress) as progress:
        progress.step("feature matrices")
        features = feature_matrices(data)
        sets = tuple(name for name in FEATURE_SETS if name in features)  # no raw weights: several layouts
        common = {"max_per_class": max_per_class, "n_folds": n_folds, "random_state": random_state,
                  "feature_sets": sets}
        progress.advance()
        overview = DataOverview().run(data)
        curves = TrainingCurves().run(data)
        trojan = TrojanDetection(**common).run(data, features, step=progress.step)
        progress.advance()
        identify = TaskIdentification(**common).run(data, features, step=progress.step)
        progress.advance()
        raw_only = _raw_weight_parts(data, features, max_per_class, n_folds, random_state, progress.step)
        for _ in range(3):
            progress.advance()
        baselines = Baselines(sets).run([trojan.results_, identify.results_])
        headline = Headline().run(identify, baselines.summary_)
        progress.advance()
        sweeps = SweepPrediction(n_folds=n_folds, random_state=random_state).run(
            data, features, step=progress.step)
        progress.advance()
        progress.step("writing the report")
        sections = [part.section_ for part in (headline, overview, curves, trojan, identify)]
        sections += [*raw_only, baselines.section_, sweeps.section_]
        files = write_report(_title(data), _intro(data, random_state), sections, Path(out_dir))
        progress.advance()
        progress.step("done")
    return AnalysisReport(Path(out_dir), files, _tables(sections))


def _raw_weight_parts(data: MergedData, features: dict[str, np.ndarray], max_per_class: int,
                      n_folds: int, random_state: int, step: Step) -> list[Section]:
    """The sections of the parts that read raw weights alone (learning curve, CPU vs GPU,
    projections), or for networks of several layouts, which have no raw-weight matrix, one
    section each saying why it was skipped."""
    if RAW_WEIGHTS not in features:
        reason = (f"Skipped: this part reads raw weights, and these networks come in {len(data.layouts)} "
                  f"weight layouts ({', '.join(data.layouts)}), whose vectors differ in length. The "
                  "trojan, task and sweep parts use the weight statistics every layout shares; "
                  "analyse one layout's networks (a sweep without width or depth) for this part.")
        return [Section(title, (reason,)) for title in _RAW_WEIGHT_TITLES]
    common = {"max_per_class": max_per_class, "n_folds": n_folds, "random_state": random_state}
    curve = LearningCurve(max_per_class=max_per_class, random_state=random_state).run(
        data, features, step=step)
    device = DeviceComparison(**common).run(data, features, step=step)
    projections = Projections(random_state=random_state).run(data, features, step=step)
    return [curve.section_, device.section_, projections.section_]


_RAW_WEIGHT_TITLES = ("3. How many example networks are needed?", "4. CPU vs GPU",
                      "5. Weight-space pictures")


def _opened(datasets: Sequence[DatasetLike | Path | str] | DatasetLike | Path | str,
            ) -> list[DatasetLike]:
    """Datasets as given to `analyze`: one or several, opened or as directories."""
    if isinstance(datasets, str | Path):
        return open_datasets(datasets)
    if isinstance(datasets, Sequence):
        return [open_datasets(d)[0] if isinstance(d, str | Path) else d for d in datasets]
    return [datasets]  # one opened dataset


def _title(data: MergedData) -> str:
    return "MLC weight-space analysis: " + " + ".join(data.networks["dataset"].unique())


def _intro(data: MergedData, random_state: int) -> list[str]:
    layouts = f"weight layout{'s' if len(data.layouts) > 1 else ''} {', '.join(data.layouts)}"
    return [f"{len(data.networks):,} networks of {len(data.tasks)} tasks, {layouts}. "
            f"Written by mlc {mlc.__version__} with "
            f"random_state={random_state}; every table is also a CSV file next to this report.",
            selection_line(data.summary, data.converged_only)]


def _tables(sections: Sequence[Section]) -> dict[str, pd.DataFrame]:
    return {table.name: table.data for section in sections for table in section.tables}


def check_report_folder(out_dir: Path) -> None:
    """Refuse a report folder that could never be used, before any work: a file, or a place inside
    a dataset (its files would break that dataset's verification)."""
    from mlc.store import dataset_containing  # loads torch: not at package import

    inside = dataset_containing(out_dir)
    if inside is not None:
        raise ConfigError(f"{out_dir} is in the dataset {inside}: write the report into a folder of its own")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file: write the report into a folder")


def _make_report_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where the folder should be, no permission, a read-only file system
        raise ConfigError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from exc
