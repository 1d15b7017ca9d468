"""The one error root of MLC and its tree.

    MLCError
    ├── PermanentError            the input is wrong; retrying will not help (reject it, say why)
    │   ├── ConfigError           a preset, config file or CLI argument is malformed
    │   ├── UnknownNameError      a task, model or preset name that is not registered
    │   ├── ResultRejected        a returned work-unit result failed validation
    │   ├── DatasetError          a dataset directory is malformed, incomplete or corrupted
    │   └── StateError            an operation that the stored state does not allow
    └── TransientError            the operation may succeed later (retry with backoff)
        ├── StoreBusy             the database or a lock is busy
        └── DiskFull              no space left where something had to be written

Foreign exceptions (OSError, SQLAlchemy, safetensors) are translated into this tree at the edges.
Messages say what is wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatasetError",
    "DiskFull",
    "MLCError",
    "PermanentError",
    "ResultRejected",
    "StateError",
    "StoreBusy",
    "TransientError",
    "UnknownNameError",
]


class MLCError(Exception):
    """Root of every error MLC raises on purpose."""


class PermanentError(MLCError):
    """The request or input is wrong; repeating it unchanged fails the same way."""


class TransientError(MLCError):
    """A passing condition (busy database, lock held); the same request may succeed later."""


class ConfigError(PermanentError):
    """A preset, configuration file or command-line argument is malformed."""


class UnknownNameError(PermanentError, KeyError):
    """A registry lookup (task, model, preset) for a name that is not registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class ResultRejected(PermanentError):
    """A returned work-unit result failed validation; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DatasetError(PermanentError):
    """A dataset directory is malformed, incomplete or fails verification."""


class StateError(PermanentError):
    """The stored state does not allow this operation (e.g. a finished experiment re-opened with
    different settings)."""


class StoreBusy(TransientError):
    """The database or a file lock is held by someone else; retry later."""


class DiskFull(TransientError):
    """No space left on the disk being written; nothing stored is lost, and re-running after space
    is freed resumes."""
