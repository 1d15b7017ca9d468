"""Work units: what a worker is asked to train, what it returns, how returns are checked.

Everything here is pickle-free: tensors travel as safetensors, the rest as JSON.
"""

from mlc.work._experiment import ExperimentConfig, describe_preset, load_preset, preset_names
from mlc.work._host import describe_device, host_id, resolve_device
from mlc.work._records import FinishedNetwork, weights_sha256
from mlc.work._result import Provenance, WorkUnitResult, decode_state, encode_state
from mlc.work._run import DataCache, WorkUnit, run_work_units, shared_data_for
from mlc.work._spec import Member, WorkUnitSpec
from mlc.work._validate import Tolerance, validate_result

__all__ = [
    "DataCache",
    "ExperimentConfig",
    "FinishedNetwork",
    "Member",
    "Provenance",
    "Tolerance",
    "WorkUnit",
    "WorkUnitResult",
    "WorkUnitSpec",
    "decode_state",
    "describe_preset",
    "describe_device",
    "encode_state",
    "host_id",
    "load_preset",
    "preset_names",
    "resolve_device",
    "run_work_units",
    "shared_data_for",
    "validate_result",
    "weights_sha256",
]
