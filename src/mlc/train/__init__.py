"""Training: the population trainer, its resumable state, the stop rule and the reference loop."""

from typing import TYPE_CHECKING

from mlc._lazy import lazy_exports

if TYPE_CHECKING:
    from mlc.train._adam import adam_step
    from mlc.train._allocator import keep_freed_memory
    from mlc.train._config import TrainConfig
    from mlc.train._data import AnyArrays, TrainingArrays, arrays_for, batch_order
    from mlc.train._images import ImageArrays
    from mlc.train._learnability import (
        AutomataSelection,
        AutomatonVerdict,
        LearnabilityReport,
        LearnabilitySettings,
        SelectionProgress,
        check_learnability,
        select_automata,
    )
    from mlc.train._reference import train_reference
    from mlc.train._sizing import bytes_per_network, choose_population_size, free_memory
    from mlc.train._state import EpochHistory, PopulationState
    from mlc.train._trainer import EpochReport, PopulationTrainer, evaluate
    from mlc.train._trojan import TriggerTargets, trigger_accuracies, trigger_targets

_EXPORTS = {
    "adam_step": "_adam",
    "keep_freed_memory": "_allocator",
    "TrainConfig": "_config",
    "AnyArrays": "_data",
    "TrainingArrays": "_data",
    "arrays_for": "_data",
    "ImageArrays": "_images",
    "batch_order": "_data",
    "AutomataSelection": "_learnability",
    "AutomatonVerdict": "_learnability",
    "LearnabilityReport": "_learnability",
    "LearnabilitySettings": "_learnability",
    "SelectionProgress": "_learnability",
    "check_learnability": "_learnability",
    "select_automata": "_learnability",
    "train_reference": "_reference",
    "bytes_per_network": "_sizing",
    "choose_population_size": "_sizing",
    "free_memory": "_sizing",
    "EpochHistory": "_state",
    "PopulationState": "_state",
    "EpochReport": "_trainer",
    "PopulationTrainer": "_trainer",
    "evaluate": "_trainer",
    "TriggerTargets": "_trojan",
    "trigger_accuracies": "_trojan",
    "trigger_targets": "_trojan",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "AnyArrays",
    "AutomataSelection",
    "AutomatonVerdict",
    "EpochHistory",
    "EpochReport",
    "ImageArrays",
    "LearnabilityReport",
    "LearnabilitySettings",
    "PopulationState",
    "PopulationTrainer",
    "SelectionProgress",
    "TrainConfig",
    "TrainingArrays",
    "TriggerTargets",
    "adam_step",
    "arrays_for",
    "batch_order",
    "bytes_per_network",
    "check_learnability",
    "choose_population_size",
    "evaluate",
    "free_memory",
    "keep_freed_memory",
    "select_automata",
    "train_reference",
    "trigger_accuracies",
    "trigger_targets",
]
