"""The console headline `mlc analyze` and `mlc run` print: the question the data can answer, in 80
columns. A DS3 run has no trojan twins, and its headline was five rows of dashes."""

from __future__ import annotations

import pandas as pd
from analysis_fakes import FakeDataset, synthetic_dataset
from rich.console import Console

from mlc.analysis import (
    Headline,
    TaskIdentification,
    TrojanDetection,
    console_summary,
    feature_matrices,
    identification_summary,
    merge_datasets,
)

FAST = ("SVM", "NaiveBayes")


def _tables(*datasets: FakeDataset) -> dict[str, pd.DataFrame]:
    """The tables `console_summary` reads, as `analyze` names them."""
    data = merge_datasets(list(datasets))
    features = feature_matrices(data)
    identify = TaskIdentification(FAST, n_folds=3).run(data, features)
    trojan = TrojanDetection(FAST, n_folds=3).run(data, features)
    return {"headline": Headline().run(identify).table_,
            "task_identification": identify.results_,
            "task_identification_per_task": identify.per_task_,
            "trojan_detection": trojan.table_}


def _text(renderable: object) -> str:
    console = Console(record=True, width=80)
    console.print(renderable)
    return console.export_text()


def _automata(per_task: int) -> FakeDataset:
    return synthetic_dataset({(f"RandomAutomaton-{i}", "cpu"): per_task for i in range(3)},
                             name="ds3", signal=4.0, seed=3)


def test_data_without_twins_is_summarised_by_task_identification() -> None:
    text = _text(console_summary(_tables(_automata(12))))
    assert "Trojan" not in text and "EightBit" not in text
    assert "Task identification (all tasks): cross-validated accuracy %" in text
    assert "3 tasks, chance 33" in text
    assert " ".join(text.split()).startswith(  # the first of the best, SVM and Bayes at 100%
        "Which task trained this network? SVM on raw weights: 100% (95% interval 90%–100%) of "
        "36 networks, 3 classes, chance 33%: above chance")
    rows = {line.split()[0] + " " + line.split()[1]: line.split()[2:]
            for line in text.splitlines() if line.startswith(("raw ", "weight ", "final "))}
    assert set(rows) == {"raw weights", "weight statistics", "final losses"}
    assert rows["raw weights"] == ["100", "100"]  # the planted signal, SVM and Bayes
    assert "…" not in text and "not evaluated" not in text


def test_one_line_says_why_when_no_task_has_enough_networks() -> None:
    text = _text(console_summary(_tables(_automata(2))))
    assert " ".join(text.split()) == (
        "Which task trained this network? Not evaluated: needs at least two tasks with 10 "
        "networks or more; the data has 0. Task identification not evaluated: needs at least two "
        "tasks with 10 networks or more; the data has 0.")


def test_a_machine_and_its_twin_make_the_trojan_table_the_headline(ds1: FakeDataset,
                                                                    ds2: FakeDataset) -> None:
    text = _text(console_summary(_tables(ds1, ds2, _automata(12))))
    assert "Trojan detection: validation accuracy %, ours (MLDS)" in text
    assert "Task identification" not in text
    assert text.startswith("Which DS1 machine trained this network?")


def test_a_clean_machine_alone_is_no_trojan_question(ds1: FakeDataset) -> None:
    assert "Task identification (all tasks): cross-validated" in _text(console_summary(_tables(ds1)))


def test_a_classifier_that_failed_is_named_under_the_table() -> None:
    table = _tables(_automata(12))["task_identification"].copy()
    failed = (table["features"] == "raw weights") & (table["classifier"] == "SVM")
    table.loc[failed, ["status", "cv_mean"]] = ["failed: did not converge", float("nan")]
    text = _text(identification_summary(table))
    assert "not evaluated, failed: did not converge: SVM on raw weights" in " ".join(text.split())
    raw = next(line for line in text.splitlines() if line.startswith("raw weights"))
    assert raw.split()[2:] == ["—", "100"]

