"""Executors: ways to get a coordinator's work units trained. `local` runs them in this process."""

from mlc.executors._local import (
    DATABASE_FILE,
    DATASET_DIR,
    LocalExecutor,
    ProgressSink,
    RunSummary,
    run_in_progress,
)

__all__ = ["DATABASE_FILE", "DATASET_DIR", "LocalExecutor", "ProgressSink", "RunSummary", "run_in_progress"]
