"""Analysis: weight-space meta-analysis of network datasets, and the report that presents it.

`analyze(datasets, out_dir)` answers MLDS's questions (spec §9) — trojan detection (the seed's
Table 2), task identification, how many networks are needed, CPU vs GPU — with training curves,
weight-space pictures and baselines on final losses and permutation-invariant weight statistics, and
writes a Markdown and a self-contained HTML report (Jinja2 templates in `templates/`) with every table
as CSV, headed by the one answer the data gives best, with its 95% interval and chance level.
`load_datasets(paths)` opens and merges dataset directories; each report part is also usable alone
(constructors store settings, `run` computes, fitted state ends in `_`). Importing this package loads
neither torch nor umap.
"""

from mlc.analysis._baselines import Baselines
from mlc.analysis._console import console_summary, identification_summary, trojan_summary
from mlc.analysis._curves import TrainingCurves
from mlc.analysis._data import (
    DatasetLike,
    LayoutEntryLike,
    LayoutLike,
    MergedData,
    load_datasets,
    merge_datasets,
    open_datasets,
)
from mlc.analysis._device import DeviceComparison
from mlc.analysis._features import (
    FEATURE_SETS,
    FINAL_LOSSES,
    RAW_WEIGHTS,
    WEIGHT_STATISTICS,
    feature_matrices,
    loss_features,
    weight_statistics,
)
from mlc.analysis._headline import Headline
from mlc.analysis._identify import TaskIdentification
from mlc.analysis._learning import LearningCurve
from mlc.analysis._overview import DataOverview, selection_line
from mlc.analysis._projections import Projections
from mlc.analysis._report import AnalysisReport, analyze, check_report_folder
from mlc.analysis._suite import CLASSIFIER_NAMES, MIN_PER_CLASS, ClassifierSuite, make_classifier
from mlc.analysis._sweeps import SWEPT_SETTINGS, SweepPrediction
from mlc.analysis._trojan import MLDS_TABLE2, TrojanDetection

__all__ = [
    "CLASSIFIER_NAMES",
    "FEATURE_SETS",
    "FINAL_LOSSES",
    "MIN_PER_CLASS",
    "MLDS_TABLE2",
    "RAW_WEIGHTS",
    "SWEPT_SETTINGS",
    "WEIGHT_STATISTICS",
    "AnalysisReport",
    "Baselines",
    "ClassifierSuite",
    "DataOverview",
    "DatasetLike",
    "DeviceComparison",
    "Headline",
    "LayoutEntryLike",
    "LayoutLike",
    "LearningCurve",
    "MergedData",
    "Projections",
    "SweepPrediction",
    "TaskIdentification",
    "TrainingCurves",
    "TrojanDetection",
    "analyze",
    "check_report_folder",
    "console_summary",
    "feature_matrices",
    "identification_summary",
    "load_datasets",
    "loss_features",
    "make_classifier",
    "merge_datasets",
    "open_datasets",
    "selection_line",
    "trojan_summary",
    "weight_statistics",
]
