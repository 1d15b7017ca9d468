"""The whole report: every table and figure file is written, the HTML page stands alone, rows that
could not be evaluated are in it, and a tiny dataset trained by the real pipeline runs through.

The full `analyze` runs UMAP, whose numba compilation takes ~10 s once per process; the two tests
here share that cost.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from analysis_fakes import FakeDataset
from rich.console import Console

from mlc.analysis import AnalysisReport, analyze, open_datasets, trojan_summary
from mlc.errors import ConfigError

TABLES = ("headline", "data_summary", "training_final", "training_curves", "trojan_detection",
          "trojan_detection_cv", "task_identification", "task_identification_per_task",
          "task_confusion_ds1", "task_confusion", "learning_curve", "device_counts",
          "device_comparison", "projections", "baselines_summary", "baselines")
FIGURES = ("training_curves", "task_confusion_ds1", "task_confusion", "learning_curve",
           "projection_pca", "projection_umap")


@pytest.fixture(scope="module")
def report(ds1: FakeDataset, ds2: FakeDataset, tmp_path_factory: pytest.TempPathFactory,
           ) -> AnalysisReport:
    out = tmp_path_factory.mktemp("report")
    return analyze([ds1, ds2], out, max_per_class=20, n_folds=3, show_progress=False)


def test_every_table_and_figure_is_written(report: AnalysisReport) -> None:
    expected = {f"{t}.csv" for t in TABLES} | {f"{f}.png" for f in FIGURES} | {
        "report.md", "report.html"}
    assert set(report.files) == expected
    assert {p.name for p in report.out_dir.iterdir()} == expected
    assert all(p.stat().st_size > 0 for p in report.files.values())
    assert set(report.tables) == set(TABLES)
    assert repr(report).startswith("AnalysisReport(") and len(repr(report)) < 400  # not every table
    for name in TABLES:
        on_disk = pd.read_csv(report.out_dir / f"{name}.csv")
        assert len(on_disk) == len(report.tables[name]), name
    for name in FIGURES:
        assert (report.out_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_html_page_stands_alone(report: AnalysisReport) -> None:
    """Images inline, no scripts or style sheets to fetch; its links are its own sections and the
    CSV files beside it, one per table, every table shown."""
    page = report.html.read_text()
    assert "http://" not in page and "https://" not in page
    images = re.findall(r'src\s*=\s*"([^"]*)"', page)
    assert len(images) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in images)
    assert "<link" not in page and "<script" not in page
    links = re.findall(r'href\s*=\s*"([^"]*)"', page)
    anchors = [link for link in links if link.startswith("#")]
    assert len(anchors) == 10 and all(f'id="{a[1:]}"' in page for a in anchors)  # the contents
    assert sorted(link for link in links if not link.startswith("#")) == sorted(
        f"{t}.csv" for t in TABLES)
    assert page.count("<table>") == len(TABLES)  # no caption without its table
    assert "&lt;NA&gt;" not in page and ">nan<" not in page  # missing cells read "—"


def test_rows_that_could_not_be_evaluated_are_reported(report: AnalysisReport) -> None:
    trojan = report.tables["trojan_detection"].set_index("machine")
    assert trojan.at["SimpleXOR", "status"] == "too few networks (n=6)"
    assert trojan.at["EightBit", "status"] == "no EightBitModified networks in the data"
    assert trojan.at["Parity", "status"] == "ok"
    markdown = report.markdown.read_text()
    for text in ("too few networks (n=6)", "no EightBitModified networks in the data",
                 "| SVM | DecisionTree |", "100% (96%)", "![", "trojan_detection.csv"):
        assert text in markdown
    assert "too few networks (n=6)" in report.html.read_text()


def test_the_console_summary_shows_ours_beside_mlds(report: AnalysisReport) -> None:
    console = Console(record=True, width=80)  # the narrowest common terminal: nothing may be cropped
    console.print(trojan_summary(report.tables["trojan_detection"]))
    text = console.export_text()
    assert "(96)" in text  # SingleDirect's SVM in the original
    assert "not evaluated, too few networks (n=6)" in text
    assert "…" not in text and "RandomForest" not in text  # its short name, "Forest"


def test_a_tiny_pipeline_dataset_runs_through(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    from mlc.executors import LocalExecutor
    from mlc.work import load_preset

    tasks = ["SingleDirectMachine", "SingleDirectModified", "ParityMachine", "ParityModified"]
    config = load_preset("mlds-smoke", {
        "tasks": tasks, "networks_per_task": 10, "subsets": [10], "networks_per_wu": 10,
        "epochs_per_wu": 1, "train.max_epochs": 1,
        "data.n_train": 16, "data.n_val": 8, "data.length": 8})
    run = LocalExecutor(tmp_path / "run", torch.device("cpu")).run(config)
    report = analyze(open_datasets([run.dataset_dir]), tmp_path / "report", n_folds=2)
    assert report.tables["data_summary"]["n_analysed"].sum() == 40
    trojan = report.tables["trojan_detection"].set_index("machine")
    assert list(trojan.loc[["SingleDirect", "Parity"], "status"]) == ["ok", "ok"]
    device = report.tables["device_comparison"]
    assert (device["status"] == "only cpu-trained networks in the data (n=10)").all()
    assert "9/9" in capsys.readouterr().err  # the progress display, on stderr, ran to the end


def test_a_class_cap_below_the_classifiable_minimum_is_refused_before_any_work(
        ds1: FakeDataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_per_class must be at least 10"):
        analyze([ds1], tmp_path / "report", max_per_class=9, show_progress=False)
    assert not (tmp_path / "report").exists()


def test_one_opened_dataset_alone_is_analysed_converged_only(ds2: FakeDataset,
                                                             tmp_path: Path) -> None:
    """`converged_only` (`mlc analyze --converged-only`): the report says which filter it applied
    and how many networks remain, at the top and in its data section."""
    report = analyze(ds2, tmp_path / "r", max_per_class=12, n_folds=2, show_progress=False,
                     converged_only=True)
    summary = report.tables["data_summary"].set_index(["task", "device_kind"])
    assert summary["dataset"].unique().tolist() == ["ds2"]
    # 3 of every 4 synthetic networks converge; at most 12 per task and device kind are analysed
    assert summary.at[("ParityModified", "cpu"), "n_converged"] == 18
    assert summary.at[("ParityModified", "cpu"), "n_analysed"] == 12
    assert summary.at[("SimpleXORModified", "cpu"), "n_analysed"] == 4
    line = ("Filter: converged networks only (--converged-only); 40 of 54 stored networks "
            "converged; 34 analysed.")
    assert report.markdown.read_text().count(line) == 2
    assert line in report.html.read_text()
