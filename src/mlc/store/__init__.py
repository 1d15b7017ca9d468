"""The dataset store: how finished networks are kept on disk, read back, exported and verified.

`DatasetWriter` builds a dataset directory crash-safely as networks arrive and consolidates it with
`finalize`; `open_dataset` reads a finished one; `export_dataset` cuts a release subset with its
archive and checksum, `export_hf` a folder the Hugging Face `datasets` package loads;
`verify_dataset` checks one end to end. The format is described in `_format`.
"""

from mlc.store._export import ExportResult, default_export_name, export_dataset
from mlc.store._format import MANIFEST_FILE, NETWORKS_SCHEMA, dataset_containing
from mlc.store._hf import export_hf
from mlc.store._reader import Dataset, open_dataset
from mlc.store._staging import scan_staged, set_aside_staged
from mlc.store._verify import VerifyReport, verify_dataset
from mlc.store._writer import DatasetWriter

__all__ = [
    "Dataset",
    "DatasetWriter",
    "ExportResult",
    "MANIFEST_FILE",
    "NETWORKS_SCHEMA",
    "VerifyReport",
    "dataset_containing",
    "default_export_name",
    "export_dataset",
    "export_hf",
    "open_dataset",
    "scan_staged",
    "set_aside_staged",
    "verify_dataset",
]
