"""Executors: ways to get a coordinator's work units trained. `local` runs them in this process."""

from mlc.executors._local import LocalExecutor, ProgressSink, RunSummary, run_in_progress

__all__ = ["LocalExecutor", "ProgressSink", "RunSummary", "run_in_progress"]
