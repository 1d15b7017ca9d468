"""MLC: train, validate, keep and analyse large populations of small neural networks.

Importing the package loads nothing heavy (no torch, no web stack); the subpackages are the API:
`mlc.tasks`, `mlc.models`, `mlc.train`, `mlc.work`, `mlc.store`, `mlc.dataset`, `mlc.coordinator`,
`mlc.executors`, `mlc.analysis`, `mlc.cli`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
