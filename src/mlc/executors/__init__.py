"""Executors: ways to get a coordinator's work units trained. `local` runs them in this process."""

from mlc.executors._local import LocalExecutor, ProgressSink, RunSummary

__all__ = ["LocalExecutor", "ProgressSink", "RunSummary"]
