"""The analysis from a notebook: inputs given the natural way work, and inputs that would give wrong
numbers without a word (feature matrices of other data) are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_fakes import FakeDataset

from mlc.analysis import (
    TaskIdentification,
    TrojanDetection,
    analyze,
    feature_matrices,
    load_datasets,
    merge_datasets,
)
from mlc.errors import ConfigError, DatasetError


def test_feature_matrices_of_other_data_are_refused(ds1: FakeDataset, ds2: FakeDataset) -> None:
    """A notebook cell not re-run: the rows would be classified under another dataset's labels."""
    both, one = merge_datasets([ds1, ds2]), merge_datasets([ds1])
    with pytest.raises(ConfigError, match=r"the 'raw weights' features have \d+ rows and the data \d+"):
        TaskIdentification(["NaiveBayes"], n_folds=3).run(one, feature_matrices(both))


def test_a_missing_or_misnamed_feature_set_is_named(ds1: FakeDataset) -> None:
    data = merge_datasets([ds1])
    features = feature_matrices(data)
    with pytest.raises(ConfigError, match=r"no feature matrix 'raw': .* the known sets are"):
        TrojanDetection(["NaiveBayes"], feature_sets=("raw",)).run(data, features)
    del features["weight statistics"]
    with pytest.raises(ConfigError, match="no feature matrix 'weight statistics'"):
        TaskIdentification(["NaiveBayes"]).run(data, features)


def test_one_classifier_name_alone_is_refused_not_read_letter_by_letter(ds1: FakeDataset) -> None:
    data = merge_datasets([ds1])
    with pytest.raises(ConfigError, match="classifiers must be a sequence of names"):
        TrojanDetection("NaiveBayes").run(data, feature_matrices(data))


def test_features_need_merged_data(ds1: FakeDataset) -> None:
    with pytest.raises(ConfigError, match="feature_matrices takes merged data, not FakeDataset"):
        feature_matrices(ds1)  # type: ignore[arg-type]


def test_paths_are_opened_where_datasets_are_expected(tmp_path: Path) -> None:
    """One path alone is one dataset: it was read as a sequence of one-character paths ("/")."""
    missing = tmp_path / "nowhere"
    for call in (lambda: load_datasets(str(missing)), lambda: analyze(str(missing), tmp_path / "r"),
                 lambda: analyze([missing], tmp_path / "r")):
        with pytest.raises(DatasetError, match=f"{missing} is not a directory"):
            call()
    with pytest.raises(ConfigError, match="merge_datasets takes opened datasets, not paths"):
        merge_datasets([str(missing)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=f"not paths \\({missing}\\)"):
        merge_datasets(str(missing))  # type: ignore[arg-type]



def test_a_report_folder_that_cannot_serve_is_refused_and_none_is_made_for_bad_data(
        ds1: FakeDataset, tmp_path: Path) -> None:
    """Checked before the data is read; made only once it has been, so a refusal leaves nothing."""
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset.json").write_text("{}")
    with pytest.raises(ConfigError, match="is in the dataset .*ds: write the report into a folder"):
        analyze(ds1, tmp_path / "ds" / "report")
    (tmp_path / "afile").write_text("in the way")
    with pytest.raises(ConfigError, match="afile is a file: write the report into a folder"):
        analyze(ds1, tmp_path / "afile")
    with pytest.raises(ConfigError, match="no dataset given"):
        analyze([], tmp_path / "a" / "b" / "report")
    assert not (tmp_path / "a").exists()
