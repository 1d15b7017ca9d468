"""Training: the population trainer, its resumable state, the stop rule and the reference loop."""

from mlc.train._adam import adam_step
from mlc.train._allocator import keep_freed_memory
from mlc.train._config import TrainConfig
from mlc.train._data import TrainingArrays, batch_order
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

__all__ = [
    "AutomataSelection",
    "AutomatonVerdict",
    "EpochHistory",
    "EpochReport",
    "LearnabilityReport",
    "LearnabilitySettings",
    "PopulationState",
    "PopulationTrainer",
    "SelectionProgress",
    "TrainConfig",
    "TrainingArrays",
    "adam_step",
    "batch_order",
    "bytes_per_network",
    "check_learnability",
    "choose_population_size",
    "free_memory",
    "evaluate",
    "keep_freed_memory",
    "select_automata",
    "train_reference",
]
