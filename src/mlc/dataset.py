"""The user-facing way to read MLC datasets: `mlc.dataset.open(DIR)`, `verify(DIR)`, `export(...)`,
`export_hf(DIR, OUT)`.

Aliases of `mlc.store`, named for the person holding a dataset rather than the code that writes one.
"""

# `open` shadows the builtin on purpose: users write `mlc.dataset.open(DIR)`.
from mlc.store import Dataset, ExportResult, VerifyReport, export_hf
from mlc.store import export_dataset as export
from mlc.store import open_dataset as open
from mlc.store import verify_dataset as verify

__all__ = ["Dataset", "ExportResult", "VerifyReport", "export", "export_hf", "open", "verify"]
