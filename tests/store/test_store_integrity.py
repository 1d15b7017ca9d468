"""Every file a dataset depends on is covered by a hash: a flipped bit, a truncation, a deletion or a
swap in any of them (staging/ included) is found by name, by verify and by finalize, never released."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import mlc.store._reader as reader
from mlc.errors import DatasetError
from mlc.store import Dataset, DatasetWriter, open_dataset, verify_dataset

TASKS = ("SingleDirectMachine", "ParityModified")  # the store fixtures' tasks
MakeNet = Callable[..., object]

STAGED = "staging/ParityModified-000001.safetensors"
FILES = ["config.json", "layout.json", "data.safetensors", "networks.parquet", "history.parquet",
         "README.md", "weights/ParityModified.safetensors", STAGED]


def flip(path: Path, offset: int, bit: int = 0) -> None:
    """Flip one bit of the byte at `offset` (negative: from the end)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def swap(a: Path, b: Path) -> None:
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


FAULTS: dict[str, Callable[[Path], None]] = {
    "low bit at the end": lambda p: flip(p, -4),  # the lowest mantissa bit of the last float32
    "middle byte": lambda p: flip(p, p.stat().st_size // 2, 3),
    "header byte": lambda p: flip(p, 40, 1),
    "truncated": truncate,
    "deleted": Path.unlink,
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", FILES)
def test_any_fault_in_any_file_is_reported_by_name(finished: Path, name: str, fault: str) -> None:
    FAULTS[fault](finished / name)
    report = verify_dataset(finished)  # never raises for a damaged file
    assert not report.ok
    # a deleted staged file is named by its network: "staging/: 1 networks ... (ParityModified-000001)"
    assert any(p.startswith(name) or Path(name).stem in p for p in report.problems), report.problems


@pytest.mark.parametrize("fault", FAULTS)
def test_a_damaged_manifest_is_refused(finished: Path, fault: str) -> None:
    FAULTS[fault](finished / "dataset.json")
    with pytest.raises(DatasetError, match="dataset.json"):
        verify_dataset(finished)


def test_swapped_shards_and_swapped_staged_files_are_reported(finished: Path) -> None:
    swap(finished / "weights" / "ParityModified.safetensors",
         finished / "weights" / "SingleDirectMachine.safetensors")
    swap(finished / "staging" / "ParityModified-000000.safetensors",
         finished / "staging" / "ParityModified-000002.safetensors")
    problems = verify_dataset(finished).problems
    for shard in ("ParityModified", "SingleDirectMachine"):
        assert f"weights/{shard}.safetensors: SHA-256 does not match the manifest (corrupted or changed)" \
            in problems
    assert any(p.startswith("staging/ParityModified-000000.safetensors: holds network "
                            "'ParityModified-000002'") for p in problems), problems


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "deleted"])
def test_finalize_refuses_a_damaged_staged_network_by_name(
        new_writer: Callable[..., DatasetWriter], make_net: MakeNet, fault: str) -> None:
    writer = new_writer()
    for task in TASKS:
        for index in range(3):
            writer.add(make_net(task, index))
    FAULTS[fault](writer.path / STAGED)
    refused = f"staged network .*{STAGED} (is corrupted|is unreadable|carries no content hash)"
    with pytest.raises(DatasetError, match=refused):
        writer.finalize()
    assert not (writer.path / "networks.parquet").exists()  # nothing was consolidated


def test_a_low_bit_flip_in_a_staged_history_is_refused(new_writer: Callable[..., DatasetWriter],
                                                       make_net: MakeNet) -> None:
    """The histories lie before the weights in the file (tensors sorted by name): train_loss first."""
    writer = new_writer()
    writer.add(make_net(TASKS[0], 0))
    path = next((writer.path / "staging").iterdir())
    header = int.from_bytes(path.read_bytes()[:8], "little")
    flip(path, 8 + header)  # the first byte of the first tensor's data
    with pytest.raises(DatasetError, match="is corrupted"):
        writer.finalize()


def test_a_changed_input_file_is_refused_on_reopen_and_finalize(
        new_writer: Callable[..., DatasetWriter], make_net: MakeNet) -> None:
    writer = new_writer()
    writer.add(make_net(TASKS[0], 0))
    config = writer.path / "config.json"
    config.write_text(config.read_text().replace("0.001", "0.002"))
    with pytest.raises(DatasetError, match="config.json missing or changed since written"):
        writer.finalize()
    with pytest.raises(DatasetError, match="config.json missing or changed since written"):
        DatasetWriter.open(writer.path)


def test_a_deleted_staged_network_of_a_released_dataset_is_reported(finished: Path) -> None:
    (finished / STAGED).unlink()
    problems = verify_dataset(finished).problems
    assert "staging/: 1 networks are in networks.parquet but have no staged file (deleted from " \
        "staging/?) (ParityModified-000001)" in problems


READS: dict[str, Callable[[Dataset], object]] = {
    "config.json": lambda ds: ds.config,
    "layout.json": lambda ds: ds.layout,
    "data.safetensors": lambda ds: ds.data(),
    "networks.parquet": lambda ds: ds.networks,
    "history.parquet": lambda ds: ds.history,
    "weights/ParityModified.safetensors": lambda ds: ds.weights(task="ParityModified"),
}


@pytest.mark.parametrize("fault", ["low bit at the end", "middle byte", "truncated"])
@pytest.mark.parametrize("name", READS)
def test_the_reader_refuses_a_damaged_file_by_name(finished: Path, name: str, fault: str) -> None:
    FAULTS[fault](finished / name)
    ds = open_dataset(finished)
    with pytest.raises(DatasetError, match=f"{name} does not match its SHA-256 in the manifest"):
        READS[name](ds)


def test_the_reader_refuses_swapped_shards(finished: Path) -> None:
    swap(finished / "weights" / "ParityModified.safetensors",
         finished / "weights" / "SingleDirectMachine.safetensors")
    with pytest.raises(DatasetError, match="ParityModified.safetensors does not match its SHA-256"):
        open_dataset(finished).weights(task="ParityModified")


def test_each_file_is_hashed_once_per_open(finished: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = reader.file_sha256
    monkeypatch.setattr(reader, "file_sha256", lambda path: hashed.append(path.name) or real(path))
    ds = open_dataset(finished)
    for _ in range(2):
        ds.weights(task="ParityModified")
        ds.weights(net_ids=["ParityModified-000001"])
    assert hashed == ["networks.parquet", "ParityModified.safetensors"]
    open_dataset(finished, verify=False).weights()
    assert len(hashed) == 2


def test_verify_false_reads_a_changed_shard_as_it_is(finished: Path) -> None:
    before = open_dataset(finished).weights(task="ParityModified")
    flip(finished / "weights" / "ParityModified.safetensors", -4)
    after = open_dataset(finished, verify=False).weights(task="ParityModified")
    assert (after != before).sum() == 1  # the opt-out reads exactly what is there


def test_an_undecodable_table_is_a_dataset_error_even_unverified(finished: Path) -> None:
    """A column name in the footer that is not UTF-8 passes Arrow's read and fails only in
    to_pandas (it was a UnicodeDecodeError from verify, info, analyze and the reader)."""
    path = finished / "networks.parquet"
    data = path.read_bytes()
    name = data.index(b"net_id", data.index(b"\x06schema"))  # the footer's schema: root, then columns
    flip(path, name, 7)  # "net_id" -> b"\xeeet_id"
    with pytest.raises(DatasetError, match="networks.parquet is unreadable"):
        _ = open_dataset(finished, verify=False).networks
    assert any(p.startswith("networks.parquet: ") for p in verify_dataset(finished).problems)
