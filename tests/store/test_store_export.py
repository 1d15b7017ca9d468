"""Release exports: the subset directory, its archive and checksum, and refusals."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlc.errors import ConfigError, DatasetError
from mlc.store import (
    DatasetWriter,
    default_export_name,
    export_dataset,
    open_dataset,
    verify_dataset,
)
from mlc.work import FinishedNetwork


def test_export_writes_subset_archive_and_checksum(finished: Path, tmp_path: Path) -> None:
    result = export_dataset(finished, tmp_path / "releases", per_task=2)
    assert result.directory == tmp_path / "releases" / "MLDS-DS1-2"
    assert result.counts == {"SingleDirectMachine": 2, "ParityModified": 2}

    release, source = open_dataset(result.directory), open_dataset(finished)
    assert release.manifest["name"] == "MLDS-DS1-2"
    assert release.manifest["subset"]["of"] == "store-test"
    assert release.manifest["counts"]["ParityModified"] == {"networks": 2, "converged": 1}
    assert list(release.networks["index"]) == [0, 1, 0, 1]
    ids = list(release.networks["net_id"])
    np.testing.assert_array_equal(release.weights(), source.weights(net_ids=ids))
    assert set(release.history["net_id"]) == set(ids)
    assert "first 2 networks of each task" in (result.directory / "README.md").read_text()
    assert verify_dataset(result.directory).ok
    assert not (result.directory / "staging").exists()

    digest = hashlib.sha256(result.archive.read_bytes()).hexdigest()
    assert result.archive.name == "MLDS-DS1-2.tar.xz" and result.sha256 == digest
    assert result.sha256_file.read_text() == f"{digest}  MLDS-DS1-2.tar.xz\n"
    with tarfile.open(result.archive) as tar:
        names = tar.getnames()
        assert {m.uname for m in tar.getmembers()} == {""}
    assert "MLDS-DS1-2/dataset.json" in names
    assert "MLDS-DS1-2/weights/ParityModified.safetensors" in names

    with pytest.raises(DatasetError, match="already exists"):
        export_dataset(finished, tmp_path / "releases", per_task=2)


def test_export_refuses_tasks_with_too_few_networks(finished: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="SingleDirectMachine has 3; ParityModified has 3"):
        export_dataset(finished, tmp_path, per_task=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # the refused export left nothing
    result = export_dataset(finished, tmp_path, per_task=5, name="short", allow_short=True)
    assert result.counts == {"SingleDirectMachine": 3, "ParityModified": 3}
    assert "contribute all they had" in (result.directory / "README.md").read_text()


def test_export_into_a_file_is_refused_with_a_reason(finished: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(ConfigError, match="file is a file, where a folder should be"):
        export_dataset(finished, tmp_path / "file", per_task=1)
    with pytest.raises(ConfigError, match="cannot make the folder .*below: Not a directory"):
        export_dataset(finished, tmp_path / "file" / "below", per_task=1)


def test_default_export_names() -> None:
    assert default_export_name("mlds-ds1", 100) == "MLDS-DS1-100"
    assert default_export_name("mlds-ds3", 1000) == "MLDS-DS3-1000"


def test_export_inside_a_dataset_is_refused(finished: Path) -> None:
    """Its files would be "not listed in the manifest" of the dataset around it."""
    for out in (finished, finished / "releases"):
        with pytest.raises(DatasetError, match="is in the dataset .*ds: write the release into a folder"):
            export_dataset(finished, out, per_task=1)
    assert verify_dataset(finished).ok


def test_an_unusable_name_from_the_preset_says_to_choose_one(
        new_writer: Callable[..., DatasetWriter], make_net: Callable[..., FinishedNetwork],
        tmp_path: Path) -> None:
    writer = new_writer(preset="../up/x")
    writer.add(make_net("SingleDirectMachine", 0))
    writer.add(make_net("ParityModified", 0))
    source = writer.finalize()
    with pytest.raises(DatasetError, match=r"'\.\./UP/X-1' is not usable .*\(--name, name= in Python\)"):
        export_dataset(source, tmp_path / "rel", per_task=1)
    assert export_dataset(source, tmp_path / "rel", per_task=1, name="named").directory.name == "named"
