"""Executors: ways to get a workdir's experiment trained. `local` trains in this process; `ray` in
Ray tasks on a cluster (Ray is an optional extra, imported only when a RayExecutor is made)."""

from mlc.executors._local import LocalExecutor
from mlc.executors._ray import RAY_INSTALL_HINT, RayExecutor
from mlc.executors._workdir import (
    DATABASE_FILE,
    DATASET_DIR,
    ProgressSink,
    RunSummary,
    WorkdirExecutor,
    run_in_progress,
)

__all__ = [
    "DATABASE_FILE",
    "DATASET_DIR",
    "RAY_INSTALL_HINT",
    "LocalExecutor",
    "ProgressSink",
    "RayExecutor",
    "RunSummary",
    "WorkdirExecutor",
    "run_in_progress",
]
