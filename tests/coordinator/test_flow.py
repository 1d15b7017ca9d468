"""The coordinator against real databases: experiments, leases, reports, validation, assimilation.

Every test runs on a SQLite file and on PostgreSQL (see conftest). Workers are the real CPU trainer
(`run_work_units`) on a tiny experiment: two tasks x two networks, 3 epochs in units of 2 epochs.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from coordinator_setup import Setup, tiny_config
from sqlalchemy import Engine, Row, event, select, update

from mlc.coordinator import (
    DEFAULT_MAX_ATTEMPTS,
    NetworkState,
    ReportOutcome,
    Verdict,
    WUState,
    apply_transitions,
    assimilate_valid,
    connect,
    create_experiment,
    experiment_status,
    lease_work,
    list_experiments,
    release_leases,
    report_result,
    transaction,
    utcnow,
    validate_pending,
)
from mlc.coordinator._schema import experiments, history, networks, results, work_units
from mlc.errors import StateError, StoreBusy
from mlc.store import DatasetWriter, open_dataset
from mlc.train import trigger_accuracies, trigger_targets
from mlc.work import FinishedNetwork, WorkUnit, WorkUnitResult, WorkUnitSpec, run_work_units

CPU = torch.device("cpu")
LEASE = 600.0  # seconds; long enough never to expire by itself during a test
MAX_EPOCHS = 3
NET_IDS = {
    "SingleDirectMachine-000000",
    "SingleDirectMachine-000001",
    "ParityMachine-000000",
    "ParityMachine-000001",
}
FIRST = ("mlds-smoke-g000000-p000", "mlds-smoke-g000001-p000")  # one per task, in seq order


# ---- helpers ---------------------------------------------------------------------------------------


def unit_row(engine: Engine, wu_id: str) -> Row[Any]:
    with engine.connect() as conn:
        return conn.execute(select(work_units).where(work_units.c.id == wu_id)).one()


def all_units(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(work_units).order_by(work_units.c.seq)))


def network_rows(engine: Engine) -> dict[str, Row[Any]]:
    with engine.connect() as conn:
        return {r.net_id: r for r in conn.execute(select(networks))}


def result_rows(engine: Engine, wu_id: str) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(select(results).where(results.c.wu_id == wu_id).order_by(results.c.id)))


def history_rows(engine: Engine) -> dict[str, list[Row[Any]]]:
    out: dict[str, list[Row[Any]]] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(history).order_by(history.c.net_id, history.c.epoch)):
            out.setdefault(r.net_id, []).append(r)
    return out


def expire_leases(engine: Engine) -> None:
    """Move every lease deadline into the past, as if the worker had vanished long ago."""
    with engine.begin() as conn:
        conn.execute(
            update(work_units)
            .where(work_units.c.lease_expires_at.is_not(None))
            .values(lease_expires_at=utcnow() - timedelta(seconds=5))
        )


def train(units: list[WorkUnit]) -> list[WorkUnitResult]:
    return run_work_units(units, CPU)


def lease_one(c: Setup, owner: str = "worker-a") -> WorkUnit:
    """Lease exactly one unit (each holds two networks)."""
    (unit,) = lease_work(c.engine, owner, 2, LEASE, experiment_id=c.exp.id)
    return unit


def tampered(result: WorkUnitResult, how: str) -> bytes:
    """The result's bytes after a dishonest (or broken) worker changed them."""
    forged = WorkUnitResult.from_bytes(result.to_bytes())  # a private copy
    if how == "params":
        forged.state.params.mul_(1.5)
    elif how == "claimed_loss":
        n = forged.history.n_epochs
        forged.history.val_loss[np.arange(len(n)), n - 1] *= 0.5  # claims to be better than it is
    elif how == "more_params":
        forged.state.params.add_(0.25)
    else:
        raise AssertionError(how)
    return forged.to_bytes()


def one_round(c: Setup, owner: str = "worker-a") -> list[WorkUnitResult]:
    """One pass of the local executor's loop: lease, train, report, validate, assimilate."""
    apply_transitions(c.engine)
    units = lease_work(c.engine, owner, 100, LEASE, experiment_id=c.exp.id)
    out = train(units)
    for r in out:
        assert report_result(c.engine, r.wu_id, r.to_bytes(), owner) == ReportOutcome.ACCEPTED
    validate_pending(c.engine, c.server)
    assimilate_valid(c.engine, c.server, c.writer_for)
    return out


def drive(c: Setup, owner: str = "worker-a", rounds: int = 10) -> list[list[WorkUnitResult]]:
    """The local executor's loop, step by step; returns the results of every round."""
    done: list[list[WorkUnitResult]] = []
    for _ in range(rounds):
        out = one_round(c, owner)
        if not out:
            return done
        done.append(out)
    raise AssertionError(f"not finished after {rounds} rounds")


# ---- creating and resuming experiments -----------------------------------------------------------


def test_create_experiment_makes_every_network_and_the_first_units(coord: Setup) -> None:
    nets = network_rows(coord.engine)
    assert set(nets) == NET_IDS
    for row in nets.values():
        assert (row.state, row.epochs, row.converged, json.loads(row.work_units)) == (
            NetworkState.TRAINING,
            0,
            False,
            [],
        )
        assert row.experiment_id == coord.exp.id
        assert row.net_seed == coord.exp.config.net_seed(row.task, row.idx)
    units = all_units(coord.engine)
    assert [u.id for u in units] == list(FIRST)
    assert [u.seq for u in units] == [1, 2]
    for u, task in zip(units, ["SingleDirectMachine", "ParityMachine"], strict=True):
        spec = WorkUnitSpec.from_json(u.spec_json)
        assert (u.state, u.attempts, u.parent_id, u.state_blob, u.lease_owner) == (
            WUState.READY,
            0,
            None,
            None,
            None,
        )
        assert [m.net_id for m in spec.members] == [f"{task}-000000", f"{task}-000001"]
        assert all(m.start_epoch == 0 and m.task == task for m in spec.members)
        assert (spec.epochs, spec.parent, spec.data_digest) == (2, None, coord.exp.data_digest)
    status = experiment_status(coord.engine, coord.exp.id)
    assert (status.n_networks, status.n_training, status.units) == (4, 4, {"ready": 2})


def test_recreating_with_the_same_settings_resumes(coord: Setup, tmp_path: Any) -> None:
    leased = lease_one(coord)  # some progress that resuming must keep
    again, created = create_experiment(coord.engine, tiny_config(), tmp_path / "elsewhere")
    assert not created
    assert (again.id, again.name, again.config, again.data_digest) == (
        coord.exp.id,
        coord.exp.name,
        coord.exp.config,
        coord.exp.data_digest,
    )
    assert again.dataset_dir == coord.exp.dataset_dir  # the stored one, not the one asked for
    assert len(all_units(coord.engine)) == 2 and len(network_rows(coord.engine)) == 4
    assert unit_row(coord.engine, leased.spec.wu_id).state == WUState.LEASED


def test_a_stored_config_this_version_refuses_names_the_experiment(coord: Setup) -> None:
    """A config stored under laxer rules (an older version) is named, not reported as a preset error."""
    stored = coord.exp.config.to_dict()
    stored["train"]["stop_val_loss"] = -1.0
    with coord.engine.begin() as conn:
        conn.execute(update(experiments).values(config_json=json.dumps(stored)))
    expected = r"experiment 'mlds-smoke' in this database has a config this version refuses \(train.stop_val"
    with pytest.raises(StateError, match=expected):
        list_experiments(coord.engine)


def test_recreating_with_other_settings_is_refused_naming_the_difference(coord: Setup, tmp_path: Any) -> None:
    with pytest.raises(StateError) as info:
        create_experiment(coord.engine, tiny_config(networks_per_task=3), tmp_path / "ds2")
    message = str(info.value)
    assert "networks_per_task: stored 2, asked 3" in message  # grows only where the caller lets it
    assert "mlds-smoke" in message and "same settings" in message and "grow" not in message
    assert "epochs_per_wu" not in message  # only what differs is named
    with pytest.raises(StateError, match="stored 2, asked 1.* grows but never shrinks"):
        create_experiment(coord.engine, tiny_config(networks_per_task=1), tmp_path / "ds2", grow=True)
    with pytest.raises(StateError, match=r"stored 2, asked 3; train.max_epochs: stored 3, asked 4\)"):
        config = tiny_config(networks_per_task=3, **{"train.max_epochs": 4})
        create_experiment(coord.engine, config, tmp_path, grow=True)
    with pytest.raises(StateError) as info:
        create_experiment(coord.engine, tiny_config(**{"train.max_epochs": 4}), tmp_path / "ds3")
    assert f"train.max_epochs: stored {MAX_EPOCHS}, asked 4)" in str(info.value)  # named as overridden
    assert "'lr'" not in str(info.value)  # not the whole train table
    assert len(network_rows(coord.engine)) == 4  # nothing was added


def test_more_networks_per_task_grows_the_experiment_like_a_fresh_one(coord: Setup, tmp_path: Any) -> None:
    with coord.engine.begin() as conn:  # as if its networks had all finished
        conn.execute(update(experiments).values(state="finished", finished_at=utcnow()))
    before = {u.id: u.spec_json for u in all_units(coord.engine)}
    grown, created = create_experiment(coord.engine, tiny_config(networks_per_task=3), tmp_path, grow=True)
    assert not created and grown.config.networks_per_task == 3
    nets = network_rows(coord.engine)
    assert set(nets) == NET_IDS | {"SingleDirectMachine-000002", "ParityMachine-000002"}
    for net_id in ("SingleDirectMachine-000002", "ParityMachine-000002"):
        task = net_id.split("-")[0]
        assert nets[net_id].net_seed == tiny_config(networks_per_task=3).net_seed(task, 2)
        assert nets[net_id].idx == 2 and nets[net_id].state == "training"
    units = all_units(coord.engine)
    assert {u.id: u.spec_json for u in units if u.id in before} == before  # the old units untouched
    new = [WorkUnitSpec.from_json(u.spec_json) for u in units if u.id not in before]
    assert [u.wu_id for u in new] == ["mlds-smoke-g000002-p000", "mlds-smoke-g000003-p000"]
    members = [[m.net_id for m in u.members] for u in new]
    assert members == [["SingleDirectMachine-000002"], ["ParityMachine-000002"]]
    with coord.engine.connect() as conn:
        row = conn.execute(select(experiments)).one()
    assert (row.state, row.finished_at) == ("running", None)
    assert json.loads(row.config_json)["networks_per_task"] == 3
    again, created = create_experiment(coord.engine, tiny_config(networks_per_task=3), tmp_path, grow=True)
    assert not created and len(network_rows(coord.engine)) == 6  # the same count again resumes


# ---- leases ----------------------------------------------------------------------------------------


def test_lease_hands_out_the_oldest_units_up_to_max_members(coord: Setup) -> None:
    before = utcnow()
    first = lease_work(coord.engine, "a", 3, LEASE, experiment_id=coord.exp.id)
    assert [u.spec.wu_id for u in first] == [FIRST[0]]  # 2 + 2 members would exceed 3
    assert first[0].state is None  # a first unit starts from fresh weights
    row = unit_row(coord.engine, FIRST[0])
    assert (row.state, row.lease_owner, row.attempts) == (WUState.LEASED, "a", 1)
    assert before + timedelta(seconds=LEASE) <= row.lease_expires_at <= utcnow() + timedelta(seconds=LEASE)
    assert unit_row(coord.engine, FIRST[1]).state == WUState.READY
    second = lease_work(coord.engine, "b", 100, LEASE, experiment_id=coord.exp.id)
    assert [u.spec.wu_id for u in second] == [FIRST[1]]
    assert lease_work(coord.engine, "c", 100, LEASE) == []
    # a unit larger than max_members is still handed out whole rather than never
    expire_leases(coord.engine)
    assert [u.spec.wu_id for u in lease_work(coord.engine, "d", 1, LEASE)] == [FIRST[0]]


def test_lease_is_limited_to_the_experiment_asked_for(coord: Setup) -> None:
    assert lease_work(coord.engine, "a", 100, LEASE, experiment_id=coord.exp.id + 1) == []
    assert len(lease_work(coord.engine, "a", 100, LEASE)) == 2


def test_a_leased_unit_waits_until_its_lease_expires(coord: Setup) -> None:
    lease_work(coord.engine, "a", 100, LEASE)
    assert lease_work(coord.engine, "b", 100, LEASE) == []
    assert apply_transitions(coord.engine) == 0  # live leases stay
    expire_leases(coord.engine)
    taken = lease_work(coord.engine, "b", 100, LEASE)
    assert [u.spec.wu_id for u in taken] == list(FIRST)
    for wu_id in FIRST:
        row = unit_row(coord.engine, wu_id)
        assert (row.state, row.lease_owner, row.attempts) == (WUState.LEASED, "b", 2)


def test_an_already_expired_lease_can_be_taken_at_once(coord: Setup) -> None:
    lease_work(coord.engine, "a", 100, -1.0)
    assert [u.spec.wu_id for u in lease_work(coord.engine, "b", 100, LEASE)] == list(FIRST)


def test_the_transitioner_requeues_expired_leases_then_fails_them(coord: Setup) -> None:
    for attempt in range(1, DEFAULT_MAX_ATTEMPTS + 1):
        apply_transitions(coord.engine)
        assert len(lease_work(coord.engine, f"w{attempt}", 100, LEASE)) == 2
        expire_leases(coord.engine)
        assert apply_transitions(coord.engine) == 2
        row = unit_row(coord.engine, FIRST[0])
        assert (row.lease_owner, row.lease_expires_at, row.attempts) == (None, None, attempt)
        if attempt < DEFAULT_MAX_ATTEMPTS:
            assert (row.state, row.error) == (WUState.READY, f"lease expired after attempt {attempt}")
    assert row.state == WUState.FAILED
    assert row.error == f"lease expired after attempt 3; gave up after {DEFAULT_MAX_ATTEMPTS} attempts"
    assert {r.state for r in network_rows(coord.engine).values()} == {NetworkState.FAILED}
    assert lease_work(coord.engine, "late", 100, LEASE) == []
    assert experiment_status(coord.engine, coord.exp.id).n_failed == 4


def test_the_same_owner_re_leases_its_own_units_after_a_restart(coord: Setup) -> None:
    held = lease_work(coord.engine, "local:host", 100, 60.0)
    expires = unit_row(coord.engine, FIRST[0]).lease_expires_at
    assert lease_work(coord.engine, "someone-else", 100, LEASE) == []
    again = lease_work(coord.engine, "local:host", 100, LEASE)  # the process restarted
    assert [u.spec.wu_id for u in again] == [u.spec.wu_id for u in held]
    row = unit_row(coord.engine, FIRST[0])
    assert (row.state, row.lease_owner) == (WUState.LEASED, "local:host")
    assert row.lease_expires_at > expires  # the new lease's deadline
    assert row.attempts == 1  # the same attempt, renewed: a restart does not use up attempts


def test_released_leases_go_back_to_the_queue_at_once_then_fail(coord: Setup) -> None:
    """A holder that lost its training (a crashed Ray task) gives its leases back: each release is one
    attempt, as an expired lease is, so a unit that kills every process training it ends failed."""
    for attempt in range(1, DEFAULT_MAX_ATTEMPTS + 1):
        assert len(lease_work(coord.engine, "ray:0", 100, LEASE)) == 2
        assert release_leases(coord.engine, "someone-else", list(FIRST)) == []  # only the holder's
        assert release_leases(coord.engine, "ray:0", [*FIRST, "no-such-unit"]) == sorted(FIRST)
        row = unit_row(coord.engine, FIRST[0])
        assert (row.lease_owner, row.lease_expires_at, row.attempts) == (None, None, attempt)
        if attempt < DEFAULT_MAX_ATTEMPTS:
            assert row.state == WUState.READY
    assert row.state == WUState.FAILED
    assert {r.state for r in network_rows(coord.engine).values()} == {NetworkState.FAILED}


# ---- reports ---------------------------------------------------------------------------------------


def test_report_outcomes(coord: Setup) -> None:
    unit = lease_one(coord)
    (result,) = train([unit])
    payload = result.to_bytes()
    wu_id = unit.spec.wu_id
    assert report_result(coord.engine, wu_id, payload, "a") == ReportOutcome.ACCEPTED
    assert unit_row(coord.engine, wu_id).state == WUState.REPORTED
    assert report_result(coord.engine, wu_id, payload, "a") == ReportOutcome.DUPLICATE
    assert report_result(coord.engine, wu_id, payload, "someone-else") == ReportOutcome.DUPLICATE
    assert len(result_rows(coord.engine, wu_id)) == 1
    with pytest.raises(StateError, match="no work unit 'mlds-smoke-g999999-p000'"):
        report_result(coord.engine, "mlds-smoke-g999999-p000", payload, "a")
    assert validate_pending(coord.engine, coord.server) == (1, 0)
    assert unit_row(coord.engine, wu_id).state == WUState.VALID
    other = tampered(result, "params")
    assert report_result(coord.engine, wu_id, other, "b") == ReportOutcome.TOO_LATE  # VALID
    assimilate_valid(coord.engine, coord.server, coord.writer_for)
    assert unit_row(coord.engine, wu_id).state == WUState.DONE
    assert report_result(coord.engine, wu_id, other, "b") == ReportOutcome.TOO_LATE  # DONE
    assert report_result(coord.engine, wu_id, payload, "a") == ReportOutcome.DUPLICATE
    assert len(result_rows(coord.engine, wu_id)) == 1  # late results are kept out


# ---- the whole loop -------------------------------------------------------------------------------


def test_the_full_loop_trains_every_network_into_the_dataset_exactly_once(coord: Setup) -> None:
    rounds = drive(coord)
    assert [[r.wu_id for r in batch] for batch in rounds] == [
        list(FIRST),
        [f"mlds-smoke-g00000{g}-p001" for g in range(2)],
    ]

    units = {u.id: u for u in all_units(coord.engine)}
    assert len(units) == 4 and {u.state for u in units.values()} == {WUState.DONE}
    for g in range(2):
        parent, child = units[f"mlds-smoke-g00000{g}-p000"], units[f"mlds-smoke-g00000{g}-p001"]
        spec = WorkUnitSpec.from_json(child.spec_json)
        assert child.parent_id == spec.parent == parent.id and child.seq > parent.seq
        assert [m.start_epoch for m in spec.members] == [2, 2]
        assert [m.net_id for m in spec.members] == [
            m.net_id for m in WorkUnitSpec.from_json(parent.spec_json).members
        ]
        for u in (parent, child):
            assert (u.state_blob, u.lease_owner, u.lease_expires_at) == (None, None, None)
            assert json.loads(u.provenance_json)["device_kind"] == "cpu"
            assert [(r.verdict, r.payload) for r in result_rows(coord.engine, u.id)] == [
                (Verdict.VALID, None)
            ]

    nets, hist = network_rows(coord.engine), history_rows(coord.engine)
    assert set(nets) == set(hist) == NET_IDS
    for net_id, row in nets.items():
        g = 0 if net_id.startswith("SingleDirect") else 1
        assert (row.state, row.epochs) == (NetworkState.FINISHED, MAX_EPOCHS)
        assert json.loads(row.work_units) == [f"mlds-smoke-g00000{g}-p000", f"mlds-smoke-g00000{g}-p001"]
        assert [h.epoch for h in hist[net_id]] == [1, 2, 3]
        # each unit's wall time is shared by its two members, not charged to each in full
        shares = [json.loads(units[w].provenance_json)["wall_time_s"] / 2 for w in json.loads(row.work_units)]
        assert row.wall_time_s > 0 and row.wall_time_s == pytest.approx(sum(shares))

    status = experiment_status(coord.engine, coord.exp.id)
    assert (status.complete, status.n_finished, status.epochs_done) == (True, 4, 4 * MAX_EPOCHS)
    assert coord.writer.staged_ids() == NET_IDS
    assert DatasetWriter.open(coord.exp.dataset_dir).staged_ids() == NET_IDS

    # passes over a finished experiment change nothing
    assert validate_pending(coord.engine, coord.server) == (0, 0)
    assert assimilate_valid(coord.engine, coord.server, coord.writer_for) == 0
    assert apply_transitions(coord.engine) == 0
    assert lease_work(coord.engine, "a", 100, LEASE) == []
    last = rounds[-1][0]
    assert report_result(coord.engine, last.wu_id, last.to_bytes(), "a") == ReportOutcome.DUPLICATE
    assert len(history_rows(coord.engine)["ParityMachine-000000"]) == MAX_EPOCHS

    # the dataset holds what the database says, and the weights the workers returned
    dataset = open_dataset(coord.writer.finalize())
    assert len(dataset) == 4
    stored = dataset.history.sort_values(["net_id", "epoch"])
    for net_id in NET_IDS:
        mine = stored[stored.net_id == net_id]
        want = hist[net_id]
        assert mine.epoch.tolist() == [h.epoch for h in want]
        np.testing.assert_allclose(mine.val_loss.to_numpy(), [h.val_loss for h in want], rtol=1e-6)
        np.testing.assert_allclose(mine.train_loss.to_numpy(), [h.train_loss for h in want], rtol=1e-6)
    for result in rounds[-1]:
        got = dataset.weights(net_ids=list(result.members))
        np.testing.assert_array_equal(got, result.state.params.numpy())

    # trojan and clean accuracy on triggered data: the server's measurement of the returned weights
    targets = trigger_targets(coord.exp.config.data, coord.exp.config.tasks)
    rows = dataset.networks.set_index("net_id")
    for result in rounds[-1]:
        tasks = [m.rsplit("-", 1)[0] for m in result.members]
        trojan, clean = trigger_accuracies(coord.server.population(coord.exp.name), result.state.params,
                                           tasks, targets)
        for m, net_id in enumerate(result.members):
            assert rows.loc[net_id, "trojan_accuracy"] == pytest.approx(trojan[m])
            assert rows.loc[net_id, "clean_accuracy_triggered"] == pytest.approx(clean[m])
            assert 0 <= trojan[m] <= 1 and 0 <= clean[m] <= 1


# ---- dishonest results ----------------------------------------------------------------------------


def test_a_tampered_result_is_rejected_retried_and_finally_failed(coord: Setup) -> None:
    wu_id = FIRST[0]
    honest: WorkUnitResult | None = None
    for attempt, how in enumerate(["params", "claimed_loss", "more_params"], start=1):
        unit = lease_one(coord, "cheat")  # its own report ends its lease: the rejection requeues
        assert unit.spec.wu_id == wu_id  # the oldest unit comes back first
        (honest,) = train([unit])
        assert report_result(coord.engine, wu_id, tampered(honest, how), "cheat") == ReportOutcome.ACCEPTED
        assert validate_pending(coord.engine, coord.server) == (0, 1)
        verdict = result_rows(coord.engine, wu_id)[-1]
        assert verdict.verdict == Verdict.INVALID and verdict.payload is None  # rejected bytes are not kept
        assert verdict.reason.startswith("loss_mismatch: ") and "claimed val loss" in verdict.reason
        row = unit_row(coord.engine, wu_id)
        assert row.attempts == attempt and row.error == f"result rejected: {verdict.reason}" + (
            f"; gave up after {attempt} attempts" if attempt == DEFAULT_MAX_ATTEMPTS else ""
        )
        want = WUState.FAILED if attempt == DEFAULT_MAX_ATTEMPTS else WUState.READY
        assert (row.state, row.lease_owner) == (want, None)
        assert assimilate_valid(coord.engine, coord.server, coord.writer_for) == 0

    nets = network_rows(coord.engine)
    assert {nets[n].state for n in nets if n.startswith("SingleDirect")} == {NetworkState.FAILED}
    assert {nets[n].state for n in nets if n.startswith("Parity")} == {NetworkState.TRAINING}
    assert honest is not None  # the honest answer now comes too late
    assert report_result(coord.engine, wu_id, honest.to_bytes(), "a") == ReportOutcome.TOO_LATE

    drive(coord)  # the other task is unaffected and finishes
    status = experiment_status(coord.engine, coord.exp.id)
    assert (status.complete, status.n_failed, status.n_finished) == (True, 2, 2)
    assert coord.writer.staged_ids() == {"ParityMachine-000000", "ParityMachine-000001"}
    assert "SingleDirectMachine-000000" not in history_rows(coord.engine)
    assert not any(u.parent_id == wu_id for u in all_units(coord.engine))  # no continuation


def test_garbage_bytes_are_rejected_as_malformed(coord: Setup) -> None:
    unit = lease_one(coord)
    assert (
        report_result(coord.engine, unit.spec.wu_id, b"not a safetensors file", "worker-a")
        == ReportOutcome.ACCEPTED
    )
    assert validate_pending(coord.engine, coord.server) == (0, 1)
    assert result_rows(coord.engine, unit.spec.wu_id)[0].reason.startswith("malformed: ")
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.READY


def test_a_result_for_another_unit_is_rejected(coord: Setup) -> None:
    a, b = lease_work(coord.engine, "a", 100, LEASE)
    ra, _ = train([a, b])
    assert report_result(coord.engine, b.spec.wu_id, ra.to_bytes(), "a") == ReportOutcome.ACCEPTED
    assert validate_pending(coord.engine, coord.server) == (0, 1)
    assert result_rows(coord.engine, b.spec.wu_id)[0].reason.startswith("wrong_work_unit: ")


# ---- crashes ---------------------------------------------------------------------------------------


class SimulatedCrash(Exception):
    pass


class CrashAfterStaging:
    """A writer that stages each record for real, then 'crashes' before anything is committed."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer
        self.records: list[FinishedNetwork] = []

    def add(self, record: FinishedNetwork) -> bool:
        self.writer.add(record)
        self.records.append(record)
        raise SimulatedCrash(record.net_id)


class RecordingWriter:
    """A writer that remembers what each add returned (True: stored now; False: already there)."""

    def __init__(self, writer: DatasetWriter) -> None:
        self.writer = writer
        self.added: dict[str, bool] = {}

    def add(self, record: FinishedNetwork) -> bool:
        self.added[record.net_id] = self.writer.add(record)
        return self.added[record.net_id]


def _to_second_generation_valid(c: Setup) -> None:
    """Run the first round completely and the second up to VALID (not yet assimilated)."""
    one_round(c, "a")
    units = lease_work(c.engine, "a", 100, LEASE)
    assert [u.spec.parent for u in units] == list(FIRST)
    for r in train(units):
        report_result(c.engine, r.wu_id, r.to_bytes(), "a")
    assert validate_pending(c.engine, c.server) == (2, 0)


def test_a_crash_between_staging_and_commit_is_harmless(coord: Setup) -> None:
    _to_second_generation_valid(coord)
    crashing = CrashAfterStaging(coord.writer)
    with pytest.raises(SimulatedCrash):
        assimilate_valid(coord.engine, coord.server, lambda _exp: crashing)  # type: ignore[arg-type,return-value]
    (first,) = crashing.records
    assert coord.writer.staged_ids() == {first.net_id}  # on disk ...
    assert network_rows(coord.engine)[first.net_id].state == NetworkState.TRAINING  # ... not in the DB
    assert len(history_rows(coord.engine)[first.net_id]) == 2
    assert unit_row(coord.engine, "mlds-smoke-g000000-p001").state == WUState.VALID

    # the restarted assimilator (a new process: the writer reopened from disk) stages the identical
    # record again, which the store recognises as a no-op, stages the rest and commits
    restarted = RecordingWriter(DatasetWriter.open(coord.exp.dataset_dir))
    assert assimilate_valid(coord.engine, coord.server, lambda _exp: restarted) == 4  # type: ignore[arg-type,return-value]
    assert restarted.added == {n: n != first.net_id for n in NET_IDS}  # True: stored now
    assert restarted.writer.add(first) is False
    assert DatasetWriter.open(coord.exp.dataset_dir).staged_ids() == NET_IDS
    assert {len(h) for h in history_rows(coord.engine).values()} == {MAX_EPOCHS}
    assert {r.state for r in network_rows(coord.engine).values()} == {NetworkState.FINISHED}
    assert experiment_status(coord.engine, coord.exp.id).complete
    assert assimilate_valid(coord.engine, coord.server, lambda _exp: restarted) == 0  # type: ignore[arg-type,return-value]


def test_a_crash_inside_the_commit_rolls_back_every_change(coord: Setup) -> None:
    _to_second_generation_valid(coord)

    def crash_at_the_last_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE results SET payload"):
            raise SimulatedCrash(statement)

    event.listen(coord.engine, "before_cursor_execute", crash_at_the_last_statement)
    try:
        with pytest.raises(SimulatedCrash):
            assimilate_valid(coord.engine, coord.server, coord.writer_for)
    finally:
        event.remove(coord.engine, "before_cursor_execute", crash_at_the_last_statement)
    # history, networks, the unit's state: all as before the pass
    assert {len(h) for h in history_rows(coord.engine).values()} == {2}
    assert {r.state for r in network_rows(coord.engine).values()} == {NetworkState.TRAINING}
    assert {u.state for u in all_units(coord.engine)} == {WUState.DONE, WUState.VALID}
    assert all(r.payload is not None for r in result_rows(coord.engine, "mlds-smoke-g000001-p001"))

    assert assimilate_valid(coord.engine, coord.server, coord.writer_for) == 4
    assert {len(h) for h in history_rows(coord.engine).values()} == {MAX_EPOCHS}
    assert coord.writer.staged_ids() == NET_IDS
    assert experiment_status(coord.engine, coord.exp.id).complete


# ---- attempts, and leases held by others ---------------------------------------------------------


def test_lease_work_never_hands_out_more_than_max_attempts(coord: Setup) -> None:
    for attempt in range(DEFAULT_MAX_ATTEMPTS):
        assert len(lease_work(coord.engine, f"w{attempt}", 100, -1.0)) == 2  # each lease expires at once
    # both units have had their 3 attempts and their last lease expired: a lease request that comes
    # before the transitioner settles them as the transitioner would, and hands out nothing
    late = lease_work(coord.engine, "w-late", 100, LEASE)
    assert late == [], f"attempt {unit_row(coord.engine, FIRST[0]).attempts} handed out"
    for wu_id in FIRST:
        row = unit_row(coord.engine, wu_id)
        assert (row.state, row.attempts, row.lease_owner) == (WUState.FAILED, DEFAULT_MAX_ATTEMPTS, None)
        assert row.error == f"lease expired after attempt 3; gave up after {DEFAULT_MAX_ATTEMPTS} attempts"
    assert {r.state for r in network_rows(coord.engine).values()} == {NetworkState.FAILED}
    assert apply_transitions(coord.engine) == 0


def test_max_attempts_is_one_setting_for_every_pass(coord: Setup) -> None:
    # lease_work: with max_attempts=1 an expired first lease fails the unit
    lease_work(coord.engine, "a", 2, -1.0, max_attempts=1)
    (unit,) = lease_work(coord.engine, "b", 2, LEASE, max_attempts=1)
    assert unit.spec.wu_id == FIRST[1]  # the only one left
    assert unit_row(coord.engine, FIRST[0]).state == WUState.FAILED
    # report_result and validate_pending: a rejected first attempt fails the unit
    assert report_result(coord.engine, FIRST[1], b"garbage", "b", max_attempts=1) == ReportOutcome.ACCEPTED
    assert validate_pending(coord.engine, coord.server, max_attempts=1) == (0, 1)
    row = unit_row(coord.engine, FIRST[1])
    assert (row.state, row.attempts) == (WUState.FAILED, 1) and row.error.endswith("gave up after 1 attempts")
    assert experiment_status(coord.engine, coord.exp.id).n_failed == 4


def test_a_larger_max_attempts_keeps_retrying(coord: Setup) -> None:
    for _ in range(DEFAULT_MAX_ATTEMPTS):
        lease_work(coord.engine, "a", 100, LEASE, max_attempts=5)
        expire_leases(coord.engine)
        apply_transitions(coord.engine, max_attempts=5)
    assert {u.state for u in all_units(coord.engine)} == {WUState.READY}
    assert len(lease_work(coord.engine, "a", 100, LEASE, max_attempts=5)) == 2


def test_a_rejected_stale_result_does_not_undo_a_live_lease(coord: Setup) -> None:
    lease_work(coord.engine, "slow", 2, -1.0)  # attempt 1, expired at once
    (unit,) = lease_work(coord.engine, "fast", 2, LEASE)  # attempt 2: a live lease
    assert report_result(coord.engine, unit.spec.wu_id, b"stale garbage", "slow") == ReportOutcome.ACCEPTED
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.REPORTED
    assert validate_pending(coord.engine, coord.server) == (0, 1)
    row = unit_row(coord.engine, unit.spec.wu_id)
    assert (row.state, row.lease_owner, row.attempts) == (WUState.LEASED, "fast", 2)
    assert row.error.startswith("result rejected: malformed: ")  # the rejection is recorded
    assert apply_transitions(coord.engine) == 0  # the lease is live: nothing to do
    expire_leases(coord.engine)  # "fast" vanished too: now the unit is retried
    assert apply_transitions(coord.engine) == 1
    row = unit_row(coord.engine, unit.spec.wu_id)
    assert (row.state, row.lease_owner, row.error) == (WUState.READY, None, "lease expired after attempt 2")


def test_a_rejected_stale_result_does_not_fail_a_running_last_attempt(coord: Setup) -> None:
    for owner in ("slow-1", "slow-2"):
        lease_work(coord.engine, owner, 2, -1.0)  # attempts 1 and 2, expired at once
    (unit,) = lease_work(coord.engine, "fast", 2, LEASE)  # attempt 3 of 3, live
    (honest,) = train([unit])
    assert report_result(coord.engine, unit.spec.wu_id, b"stale garbage", "slow-1") == ReportOutcome.ACCEPTED
    validate_pending(coord.engine, coord.server)  # rejects the stale upload; "fast" still holds the unit
    outcome = report_result(coord.engine, unit.spec.wu_id, honest.to_bytes(), "fast")
    validate_pending(coord.engine, coord.server)
    assimilate_valid(coord.engine, coord.server, coord.writer_for)
    states = {r.state for n, r in network_rows(coord.engine).items() if n.startswith("SingleDirect")}
    assert (outcome, states) == (ReportOutcome.ACCEPTED, {NetworkState.TRAINING}), (
        outcome,
        states,
        unit_row(coord.engine, unit.spec.wu_id).error,
    )
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.DONE


def test_a_rejected_result_of_the_last_attempt_from_its_holder_fails_the_unit(coord: Setup) -> None:
    for owner in ("slow-1", "slow-2"):
        lease_work(coord.engine, owner, 2, -1.0)
    (unit,) = lease_work(coord.engine, "fast", 2, LEASE)  # attempt 3 of 3
    assert report_result(coord.engine, unit.spec.wu_id, b"garbage", "fast") == ReportOutcome.ACCEPTED
    validate_pending(coord.engine, coord.server)  # its holder delivered: no lease is left to wait for
    row = unit_row(coord.engine, unit.spec.wu_id)
    assert (row.state, row.lease_owner, row.lease_expires_at) == (WUState.FAILED, None, None)


def test_a_late_valid_result_from_an_earlier_lease_is_accepted(coord: Setup) -> None:
    (slow,) = lease_work(coord.engine, "slow", 2, -1.0)  # attempt 1, expired at once
    (unit,) = lease_work(coord.engine, "fast", 2, LEASE)  # attempt 2, live
    (late,) = train([slow])
    assert report_result(coord.engine, unit.spec.wu_id, late.to_bytes(), "slow") == ReportOutcome.ACCEPTED
    assert validate_pending(coord.engine, coord.server) == (1, 0)
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.VALID
    assert assimilate_valid(coord.engine, coord.server, coord.writer_for) == 0  # 2 of 3 epochs: none stop
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.DONE
    (mine,) = train([unit])  # "fast" finishes too: its answer is no longer needed
    assert report_result(coord.engine, unit.spec.wu_id, mine.to_bytes(), "fast") == ReportOutcome.TOO_LATE
    assert [r.reporter for r in result_rows(coord.engine, unit.spec.wu_id)] == ["slow"]


@pytest.mark.parametrize("assimilated_first", [True, False], ids=["assimilated", "valid"])
def test_a_result_pending_at_assimilation_is_not_judged_malformed(
    coord: Setup, monkeypatch: pytest.MonkeyPatch, assimilated_first: bool
) -> None:
    import mlc.coordinator._validator as validator

    unit = lease_one(coord)
    (result,) = train([unit])
    second = WorkUnitResult.from_bytes(result.to_bytes())
    second.provenance = type(second.provenance)(**{**vars(second.provenance), "host_id": "other-host"})
    assert report_result(coord.engine, unit.spec.wu_id, result.to_bytes(), "a") == ReportOutcome.ACCEPTED
    judge = validator.judge

    def judge_while_a_second_upload_arrives(*args: Any) -> Any:
        # a second worker uploads while the validator re-evaluates the first result (outside any
        # transaction, as _validator's docstring says)
        report_result(coord.engine, unit.spec.wu_id, second.to_bytes(), "b")
        monkeypatch.setattr(validator, "judge", judge)
        return judge(*args)

    monkeypatch.setattr(validator, "judge", judge_while_a_second_upload_arrives)
    assert validate_pending(coord.engine, coord.server) == (1, 0)
    if assimilated_first:
        assimilate_valid(coord.engine, coord.server, coord.writer_for)
    assert validate_pending(coord.engine, coord.server) == (0, 0)  # superseded: counted in neither
    late = result_rows(coord.engine, unit.spec.wu_id)[1]
    assert not (late.verdict == Verdict.INVALID and late.reason.startswith("malformed")), late.reason
    assert (late.verdict, late.payload) == (Verdict.SUPERSEDED, None)
    assert late.reason.startswith(f"superseded: {unit.spec.wu_id} ")
    assimilate_valid(coord.engine, coord.server, coord.writer_for)
    assert [r.verdict for r in result_rows(coord.engine, unit.spec.wu_id)] == [
        Verdict.VALID,
        Verdict.SUPERSEDED,
    ]
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.DONE


def test_a_pending_result_keeps_its_bytes_when_another_unit_is_assimilated(coord: Setup) -> None:
    a, b = lease_work(coord.engine, "a", 100, LEASE)
    ra, rb = train([a, b])
    report_result(coord.engine, a.spec.wu_id, ra.to_bytes(), "a")
    validate_pending(coord.engine, coord.server)
    report_result(coord.engine, b.spec.wu_id, rb.to_bytes(), "a")
    assimilate_valid(coord.engine, coord.server, coord.writer_for)
    (pending,) = result_rows(coord.engine, b.spec.wu_id)
    assert (pending.verdict, pending.payload) == (Verdict.PENDING, rb.to_bytes())
    assert validate_pending(coord.engine, coord.server) == (1, 0)


# ---- two experiments in one database --------------------------------------------------------------


def test_two_experiments_with_a_common_task_share_one_database(
    coord: Setup, make_setup: Any, tmp_path: Any
) -> None:
    other = make_setup(name="other")
    assert other.exp.id != coord.exp.id
    with coord.engine.connect() as conn:
        rows = list(conn.execute(select(networks.c.experiment_id, networks.c.net_id)))
    assert len(rows) == 8
    for exp_id in (coord.exp.id, other.exp.id):
        assert {n for e, n in rows if e == exp_id} == NET_IDS  # the dataset-facing ids, unchanged
    drive(coord)
    assert experiment_status(coord.engine, other.exp.id).n_training == 4  # untouched by the first run
    drive(other)
    with coord.engine.connect() as conn:
        hist = list(conn.execute(select(history.c.experiment_id, history.c.net_id, history.c.epoch)))
    assert len(hist) == 2 * 4 * MAX_EPOCHS
    for setup in (coord, other):
        status = experiment_status(coord.engine, setup.exp.id)
        assert (status.complete, status.n_finished, status.epochs_done) == (True, 4, 4 * MAX_EPOCHS)
        assert status.finished_at is not None
        assert setup.writer.staged_ids() == NET_IDS
        assert (
            sorted(e for e, n, _ in hist if n == "ParityMachine-000000")
            == [coord.exp.id] * 3 + [other.exp.id] * 3
        )


def test_finished_at_is_set_when_the_last_network_finishes(coord: Setup) -> None:
    one_round(coord, "a")
    assert experiment_status(coord.engine, coord.exp.id).finished_at is None  # continuations remain
    before = utcnow()
    drive(coord)
    finished_at = experiment_status(coord.engine, coord.exp.id).finished_at
    assert finished_at is not None and before <= finished_at <= utcnow()


def test_finished_at_is_set_when_the_last_networks_fail(coord: Setup) -> None:
    for _ in range(DEFAULT_MAX_ATTEMPTS):
        lease_work(coord.engine, "a", 100, -1.0)
    assert experiment_status(coord.engine, coord.exp.id).finished_at is None
    apply_transitions(coord.engine)
    status = experiment_status(coord.engine, coord.exp.id)
    assert (status.n_failed, status.complete) == (4, True) and status.finished_at is not None


# ---- concurrency: another process's call lands inside one of ours --------------------------------


class Beside:
    """A call another process makes while one of ours is inside its transaction (started by a hook).

    It runs in a thread on an engine of its own. On PostgreSQL it runs to its end at once (our
    transaction holds no lock it needs); on SQLite, whose write transactions begin IMMEDIATE, it must
    wait for ours to commit: it is still waiting when `start` returns.
    """

    def __init__(self, db_url: str, call: Any) -> None:
        self.db_url, self.call = db_url, call
        self.thread: threading.Thread | None = None
        self.outcome: list[Any] = []
        self.waited_for_us = False

    def _run(self) -> None:
        other_process = connect(self.db_url)
        try:
            self.outcome.append(self.call(other_process))
        except Exception as exc:  # handed to the test in `result`
            self.outcome.append(exc)
        finally:
            other_process.dispose()

    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        sqlite = self.db_url.startswith("sqlite")
        self.thread.join(timeout=0.5 if sqlite else 60.0)
        self.waited_for_us = self.thread.is_alive()

    def result(self) -> Any:
        assert self.thread is not None, "the hook never fired"
        self.thread.join(timeout=60.0)
        (outcome,) = self.outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_a_concurrent_duplicate_upload_is_a_duplicate(coord: Setup, db_url: str) -> None:
    unit = lease_one(coord)
    (result,) = train([unit])
    payload = result.to_bytes()
    theirs = Beside(db_url, lambda eng: report_result(eng, unit.spec.wu_id, payload, "b"))

    def the_other_upload_lands_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO results"):
            theirs.start()

    event.listen(coord.engine, "before_cursor_execute", the_other_upload_lands_first)
    try:
        mine = report_result(coord.engine, unit.spec.wu_id, payload, "a")
    finally:
        event.remove(coord.engine, "before_cursor_execute", the_other_upload_lands_first)
    assert sorted([mine, theirs.result()]) == sorted([ReportOutcome.ACCEPTED, ReportOutcome.DUPLICATE])
    if coord.engine.dialect.name == "sqlite":
        assert theirs.waited_for_us and mine == ReportOutcome.ACCEPTED
    else:  # theirs landed first: our INSERT hit the unique (wu_id, sha256) and became DUPLICATE
        assert not theirs.waited_for_us and mine == ReportOutcome.DUPLICATE
    assert len(result_rows(coord.engine, unit.spec.wu_id)) == 1
    assert unit_row(coord.engine, unit.spec.wu_id).state == WUState.REPORTED


def test_two_schedulers_never_lease_the_same_unit(coord: Setup, db_url: str) -> None:
    theirs = Beside(db_url, lambda eng: lease_work(eng, "b", 2, LEASE))

    def the_other_lease_lands_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE work_units"):
            theirs.start()

    event.listen(coord.engine, "before_cursor_execute", the_other_lease_lands_first)
    try:
        mine = lease_work(coord.engine, "a", 2, LEASE)
    finally:
        event.remove(coord.engine, "before_cursor_execute", the_other_lease_lands_first)
    mine_ids = {u.spec.wu_id for u in mine}
    their_ids = {u.spec.wu_id for u in theirs.result()}
    assert not mine_ids & their_ids, f"both 'a' and 'b' hold {mine_ids & their_ids}"
    assert mine_ids == {FIRST[0]}
    if coord.engine.dialect.name == "sqlite":  # it waited, then took what was left
        assert theirs.waited_for_us and their_ids == {FIRST[1]}
    for u in all_units(coord.engine):
        assert u.attempts == (1 if u.state == WUState.LEASED else 0)


def test_status_reads_while_a_run_holds_the_write_lock(coord: Setup, db_url: str) -> None:
    lease_one(coord)
    with transaction(coord.engine) as conn:  # the run, in the middle of a write
        conn.execute(update(work_units).where(work_units.c.id == FIRST[1]).values(error="in flight"))
        started = time.perf_counter()
        status_process = connect(db_url)  # what `mlc status` does
        try:
            (exp,) = list_experiments(status_process)
            status = experiment_status(status_process, exp.id)
            with status_process.connect() as read:  # a plain read-only connection too
                errors = read.execute(select(work_units.c.error).order_by(work_units.c.seq)).scalars().all()
        finally:
            status_process.dispose()
        assert time.perf_counter() - started < 5.0  # it did not wait for the writer
    assert status.units == {"leased": 1, "ready": 1} and status.n_networks == 4
    assert errors == [None, None]  # the snapshot before the uncommitted write
    assert unit_row(coord.engine, FIRST[1]).error == "in flight"


def test_a_busy_sqlite_database_is_store_busy(coord: Setup, db_url: str) -> None:
    if coord.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite locks the whole database for a writer")
    other_process = connect(db_url)
    try:
        with transaction(coord.engine):
            with other_process.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout=50")
                conn.commit()
            with pytest.raises(StoreBusy, match="database busy"):
                lease_work(other_process, "b", 2, LEASE)
    finally:
        other_process.dispose()


def test_the_dataset_names_the_experiment_s_spec_version(make_setup: Any) -> None:
    setup = make_setup(name="v2", spec_version="mlds-2")
    assert setup.exp.config.spec_version == "mlds-2" and setup.exp.config.data.trigger_rate == 0.25
    manifest = json.loads((setup.writer.path / "dataset.json").read_text())
    assert manifest["spec_version"] == "mlds-2" and manifest["data"]["trigger_rate"] == 0.25
