"""Work units: what a worker is asked to train, what it returns, how returns are checked.

Everything here is pickle-free: tensors travel as safetensors, the rest as JSON.
"""

from typing import TYPE_CHECKING

from mlc._lazy import lazy_exports

if TYPE_CHECKING:
    from mlc.work._checkpoint import CheckpointStore
    from mlc.work._experiment import ExperimentConfig, load_preset, preset_from_text
    from mlc.work._host import describe_device, host_id, kernel_class, resolve_device
    from mlc.work._kernels import population_for, set_training_threads
    from mlc.work._limits import check_resources
    from mlc.work._precheck import precheck_result
    from mlc.work._presets import describe_preset, preset_names, preset_text
    from mlc.work._progress import EpochProgress
    from mlc.work._records import FinishedNetwork, weights_sha256
    from mlc.work._replay import ReplayTolerance, replay_segment, segment_bounds
    from mlc.work._result import Provenance, WorkUnitResult, decode_state, encode_state
    from mlc.work._run import DataCache, TrainingStopped, run_work_units, shared_data_for
    from mlc.work._runtime import SizedWork, WorkerRuntime
    from mlc.work._spec import Member, WorkUnit, WorkUnitSpec
    from mlc.work._sweep import Sweep, Variant
    from mlc.work._validate import Tolerance, triggered_reevaluation, validate_result

_EXPORTS = {
    "ReplayTolerance": "_replay",
    "replay_segment": "_replay",
    "segment_bounds": "_replay",
    "kernel_class": "_host",
    "precheck_result": "_precheck",
    "EpochProgress": "_progress",
    "CheckpointStore": "_checkpoint",
    "SizedWork": "_runtime",
    "TrainingStopped": "_run",
    "WorkerRuntime": "_runtime",
    "population_for": "_kernels",
    "set_training_threads": "_kernels",
    "ExperimentConfig": "_experiment",
    "describe_preset": "_presets",
    "load_preset": "_experiment",
    "preset_names": "_presets",
    "preset_from_text": "_experiment",
    "preset_text": "_presets",
    "describe_device": "_host",
    "host_id": "_host",
    "resolve_device": "_host",
    "FinishedNetwork": "_records",
    "check_resources": "_limits",
    "weights_sha256": "_records",
    "Provenance": "_result",
    "WorkUnitResult": "_result",
    "decode_state": "_result",
    "encode_state": "_result",
    "DataCache": "_run",
    "run_work_units": "_run",
    "shared_data_for": "_run",
    "Member": "_spec",
    "WorkUnit": "_spec",
    "WorkUnitSpec": "_spec",
    "Sweep": "_sweep",
    "Variant": "_sweep",
    "Tolerance": "_validate",
    "triggered_reevaluation": "_validate",
    "validate_result": "_validate",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "CheckpointStore",
    "DataCache",
    "EpochProgress",
    "ExperimentConfig",
    "FinishedNetwork",
    "Member",
    "Provenance",
    "ReplayTolerance",
    "SizedWork",
    "Sweep",
    "Tolerance",
    "TrainingStopped",
    "Variant",
    "WorkUnit",
    "WorkUnitResult",
    "WorkUnitSpec",
    "WorkerRuntime",
    "check_resources",
    "decode_state",
    "describe_device",
    "describe_preset",
    "encode_state",
    "host_id",
    "kernel_class",
    "load_preset",
    "population_for",
    "precheck_result",
    "preset_from_text",
    "preset_names",
    "preset_text",
    "replay_segment",
    "resolve_device",
    "run_work_units",
    "segment_bounds",
    "set_training_threads",
    "shared_data_for",
    "triggered_reevaluation",
    "validate_result",
    "weights_sha256",
]
