"""Resource limits, checked before anything is allocated: a preset's network count, data size and
epochs against this machine's memory and the workdir's disk.

A preset asking for 10^12 networks per task used to be accepted and grow memory until the process
was killed; one asking for 10^12 training sequences ended in numpy's "Unable to allocate 455. TiB".
The estimates here are deliberately rough (what the experiment's records, the shared data and the
stored networks take, not the trainer's working memory, which `WorkerRuntime.capacity` sizes to
what is free): they exist to refuse the impossible with a message naming the setting, not to
predict a run to the byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlc._host import available_memory
from mlc._storage import free_bytes, human_bytes
from mlc.errors import ConfigError
from mlc.tasks import N_INPUT_BITS, N_OUTPUT_BITS, DataSpec

if TYPE_CHECKING:
    from mlc.work._experiment import ExperimentConfig

__all__ = ["check_data_memory", "check_resources"]

_ROW_MEMORY = 1024  # bytes per network while its experiment is created (rows, members), per task
_NETWORK_OVERHEAD = 4096  # bytes per stored network besides its weights (headers, table and DB rows)
_EPOCH_DISK = 2 * 3 * 4 + 64  # bytes per network and epoch: staged and released history, DB row
_DATA_COPIES = 3  # the shared data is held by the coordinator, its server copy and the trainer


@dataclass(frozen=True)
class _Need:
    setting: str  # the preset key (and CLI option) that sets it
    what: str
    n_bytes: int


def _data_need(data: DataSpec, n_tasks: int) -> _Need:
    per_step = N_INPUT_BITS + n_tasks * N_OUTPUT_BITS  # uint8 inputs and each task's targets
    n_bytes = _DATA_COPIES * (data.n_train + data.n_val) * data.length * per_step
    return _Need("data.n_train", f"the shared data ({data.n_train:,} + {data.n_val:,} sequences of "
                 f"{data.length} steps, {n_tasks} tasks)", n_bytes)


def _refuse(needs: list[_Need], available: int, resource: str, where: str) -> None:
    total = sum(n.n_bytes for n in needs)
    if total <= available:
        return
    biggest = max(needs, key=lambda n: n.n_bytes)
    parts = "; ".join(f"{n.what}: {human_bytes(n.n_bytes)}" for n in needs if n.n_bytes)
    option = {"networks_per_task": " (--networks-per-task)", "train.max_epochs": " (--max-epochs)"}
    raise ConfigError(
        f"{biggest.setting} is too large for this machine: the run needs about {human_bytes(total)} of "
        f"{resource} ({parts}), and {where} has {human_bytes(available)}; lower "
        f"{biggest.setting}{option.get(biggest.setting, '')} in the preset")


def check_data_memory(data: DataSpec, n_tasks: int, *, memory: int | None = None) -> None:
    """ConfigError naming data.n_train where the shared data alone would not fit in memory (checked
    before a DS3 preset's learnability check draws it)."""
    _refuse([_data_need(data, n_tasks)], available_memory() if memory is None else memory,
            "memory", "this machine")


def check_resources(config: ExperimentConfig, workdir: Path | None = None, *, n_stored: int = 0,
                    memory: int | None = None, disk: int | None = None) -> None:
    """ConfigError naming the setting (networks_per_task, data.n_train, train.max_epochs) where the
    experiment `config` cannot fit this machine's memory or, with `workdir`,
    the free disk there; `n_stored` networks are already on that disk (a resumed run)."""
    # config.layouts loads torch: not for the lease path, which never checks a preset
    n_params = max(layout.n_params for layout in config.layouts)  # a width sweep: its widest
    n_tasks, per_task, epochs = len(config.tasks), config.networks_per_task, config.train.max_epochs
    data = _data_need(config.data, n_tasks)
    rows = _Need("networks_per_task", f"{per_task:,} networks' records per task", per_task * _ROW_MEMORY)
    _refuse([data, rows], available_memory() if memory is None else memory, "memory", "this machine")
    if workdir is None:
        return
    left = max(n_tasks * per_task - n_stored, 0)
    weights = _Need("networks_per_task", f"{left:,} networks' weights and records",
                    left * (2 * 4 * n_params + _NETWORK_OVERHEAD))
    history = _Need("train.max_epochs", f"their histories of up to {epochs:,} epochs",
                    left * epochs * _EPOCH_DISK)
    free = free_bytes(workdir) if disk is None else disk
    if free is not None:
        _refuse([weights, history, _Need("data.n_train", "the data file", data.n_bytes // _DATA_COPIES)],
                free, "disk", f"the disk holding {workdir}")
