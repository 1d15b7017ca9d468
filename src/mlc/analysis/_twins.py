"""DS1 machines and their DS2 trojan twins, by name (spec §2-3).

`<Machine>Machine` is the clean task and `<Machine>Modified` its trojaned twin; the original Table 2
names a row by the bare `<Machine>`. Only names are used, so the analysis needs no task registry.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MLDS_MACHINES", "clean_task", "machine_of", "machines_in", "trojan_task"]

MLDS_MACHINES = ("EightBit", "SingleDirect", "SingleInvert", "SimpleXOR", "Parity")  # Table 2 order
_CLEAN, _TROJAN = "Machine", "Modified"


def clean_task(machine: str) -> str:
    return machine + _CLEAN


def trojan_task(machine: str) -> str:
    return machine + _TROJAN


def machine_of(task: str) -> str | None:
    """"SingleDirectModified" -> "SingleDirect"; None for a task outside the DS1/DS2 naming."""
    for suffix in (_CLEAN, _TROJAN):
        if task.endswith(suffix) and len(task) > len(suffix):
            return task.removesuffix(suffix)
    return None


def machines_in(tasks: Iterable[str]) -> tuple[str, ...]:
    """The five MLDS machines in Table 2's order, then any other machine a task of `tasks` names."""
    found = {m for m in map(machine_of, tasks) if m is not None}
    return MLDS_MACHINES + tuple(sorted(found - set(MLDS_MACHINES)))
