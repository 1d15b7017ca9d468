"""Replication and retroactive withdrawal, on real databases with the real trainer: a unit sent to a
replica waits for a second host of its kernel class, two hosts that agree confirm it, a third settles
a disagreement and the outvoted host is untrusted; a host found untrusted later has its unconfirmed
networks taken out of the dataset and trained again, and the dataset then equals an honest one.

The tiny experiment's units are uncut (no segment replay), so a host that trains with another
learning rate passes re-evaluation (its history is its weights' own) and only a replica catches it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from coordinator_setup import Setup
from sqlalchemy import select

import mlc.dataset
from mlc.coordinator import (
    ReplicationPolicy,
    WUState,
    apply_transitions,
    assimilate_valid,
    distrust_reporter,
    lease_work,
    register_host,
    report_result,
    settle_credit,
    validate_pending,
)
from mlc.coordinator._schema import hosts, networks, results, withdrawals, work_units
from mlc.store import verify_dataset
from mlc.work import WorkUnit, WorkUnitResult, WorkUnitSpec, kernel_class, population_for, run_work_units

ALWAYS = ReplicationPolicy(run=0, floor=1.0)
NEVER = ReplicationPolicy(run=0, floor=0.0)
ONE_UNIT = {"train.max_epochs": 2}  # every network finishes in its first unit


def _train(units: list[WorkUnit], lr_factor: float = 1.0) -> list[WorkUnitResult]:
    """Train `units` as a host would; with `lr_factor`, as a cheat that changes the learning rate."""
    if lr_factor != 1.0:
        units = [
            dataclasses.replace(
                u,
                spec=dataclasses.replace(
                    u.spec, train=dataclasses.replace(u.spec.train, lr=u.spec.train.lr * lr_factor)
                ),
            )
            for u in units
        ]
    return run_work_units(units, torch.device("cpu"))


def _hosts(c: Setup, n: int, kernel_class: str) -> list[str]:
    """`n` registered hosts, all known to be of `kernel_class` (as their judged results would say)."""
    owners = []
    for k in range(n):
        host, _ = register_host(c.engine, f"h{k}", {"device": "cpu"})
        with c.engine.begin() as conn:
            conn.execute(hosts.update().where(hosts.c.id == host.id).values(kernel_class=kernel_class))
        owners.append(host.owner)
    return owners


def _do(c: Setup, owner: str, policy: ReplicationPolicy, lr_factor: float = 1.0) -> list[str]:
    """`owner` leases what it may, trains and reports it, and the validator judges; returns the ids."""
    with c.engine.connect() as conn:
        klass = conn.execute(select(hosts.c.kernel_class).where(hosts.c.id == int(owner[5:]))).scalar()
    units = lease_work(c.engine, owner, 2, 600.0, experiment_id=c.exp.id, kernel_class=klass)
    for result in _train(units, lr_factor):
        report_result(c.engine, result.wu_id, result.to_bytes(), owner)
    validate_pending(c.engine, c.server, replication=policy)
    return [u.spec.wu_id for u in units]


def _unit(c: Setup, wu_id: str):  # type: ignore[no-untyped-def]
    with c.engine.connect() as conn:
        return conn.execute(select(work_units).where(work_units.c.id == wu_id)).one()


def _trust(c: Setup, owner: str) -> str:
    with c.engine.connect() as conn:
        return conn.execute(select(hosts.c.trust).where(hosts.c.id == int(owner[5:]))).scalar()


def _class_of(_c: Setup) -> str:
    """The kernel class this machine's CPU training reports."""
    cpu = torch.device("cpu")
    return kernel_class(cpu, population_for("mlds-gru", cpu).kernels)


@pytest.fixture
def one_unit(make_setup) -> Setup:  # type: ignore[no-untyped-def]
    return make_setup(**ONE_UNIT)


def test_a_replicated_unit_waits_for_a_second_host_of_its_class_and_two_that_agree_confirm_it(
    one_unit: Setup,
) -> None:
    c = one_unit
    klass = _class_of(c)
    first, second = _hosts(c, 2, klass)
    (other_class,) = _hosts(c, 1, "cuda:triton:sm90")
    (wu_id,) = _do(c, first, ALWAYS)
    unit = _unit(c, wu_id)
    assert (unit.state, unit.quorum, unit.replica_class) == (WUState.READY, 2, klass)
    assert wu_id not in _do(c, first, ALWAYS)  # not to the host that trained it
    assert wu_id not in _do(c, other_class, ALWAYS)  # nor to another kernel class
    assert wu_id in _do(c, second, ALWAYS)
    assert _unit(c, wu_id).state == WUState.VALID
    with c.engine.connect() as conn:
        digests = (
            conn.execute(select(results.c.training_sha256).where(results.c.wu_id == wu_id)).scalars().all()
        )
        streaks = conn.execute(select(hosts.c.agree_streak).order_by(hosts.c.id)).scalars().all()
    assert len(digests) == 2 and digests[0] == digests[1]  # bit-identical on one kernel class
    assert streaks[:2] == [1, 1]
    assimilate_valid(c.engine, c.server, c.writer_for)
    c.writer.finalize()
    got = mlc.dataset.open(c.writer.path).networks.set_index("net_id")
    trained = [json.loads(t) for t in got["trained_by"]]
    first_id, second_id = first.removeprefix("host:"), second.removeprefix("host:")
    assert f"host:{first_id}+host:{second_id}" in {w for t in trained for w in t}
    replicated = got[[f"host:{first_id}+host:{second_id}" in t for t in trained]]
    assert len(replicated) == 2 and replicated["confirmed"].all()


def test_a_disagreement_is_settled_by_a_third_host_and_the_outvoted_one_is_untrusted(one_unit: Setup) -> None:
    c = one_unit
    cheat, honest, third = _hosts(c, 3, _class_of(c))
    (wu_id,) = _do(c, cheat, ALWAYS, lr_factor=3.0)  # passes re-evaluation: nothing else checks it
    assert _unit(c, wu_id).quorum == 2
    assert wu_id in _do(c, honest, ALWAYS)
    assert _unit(c, wu_id).state == WUState.READY  # 1 of 2 agree either way: a third must settle it
    with c.engine.connect() as conn:
        assert conn.execute(select(hosts.c.agree_streak)).scalars().all() == [0, 0, 0]
    assert wu_id in _do(c, third, ALWAYS)
    assert _unit(c, wu_id).state == WUState.VALID
    assert (_trust(c, cheat), _trust(c, honest), _trust(c, third)) == ("untrusted", "new", "new")
    with c.engine.connect() as conn:
        verdicts = dict(
            conn.execute(select(results.c.reporter, results.c.verdict).where(results.c.wu_id == wu_id)).all()
        )
        reason = conn.execute(
            select(results.c.reason).where(results.c.wu_id == wu_id, results.c.reporter == cheat)
        ).scalar()
    assert verdicts == {cheat: "invalid", honest: "valid", third: "valid"}
    assert "outvoted" in reason


def test_a_host_found_untrusted_later_has_its_unconfirmed_networks_withdrawn_and_retrained(
    one_unit: Setup, make_setup
) -> None:  # type: ignore[no-untyped-def]
    c = one_unit
    cheat, honest = _hosts(c, 2, _class_of(c))
    cheated = _do(c, cheat, NEVER, lr_factor=3.0)  # its two networks pass and are assimilated
    assert len(cheated) == 1
    while _do(c, honest, NEVER):
        pass
    assimilate_valid(c.engine, c.server, c.writer_for)
    settle_credit(c.engine)
    assert c.writer.n_staged == 4
    members = [m.net_id for m in _spec(c, cheated[0]).members]

    assert distrust_reporter(c.engine, cheat, "caught cheating on a later unit") >= 1
    assert _unit(c, cheated[0]).state == WUState.WITHDRAWN
    with c.engine.connect() as conn:
        states = dict(conn.execute(select(networks.c.net_id, networks.c.state)).all())
        pending = (
            conn.execute(select(withdrawals.c.net_id).where(withdrawals.c.applied_at.is_(None)))
            .scalars()
            .all()
        )
        voided = conn.execute(select(results.c.verdict).where(results.c.reporter == cheat)).scalars().all()
    assert all(states[n] == "training" for n in members) and sorted(pending) == sorted(members)
    assert voided == ["invalid"]
    assert settle_credit(c.engine) == (0, 1)  # its credit taken back

    assimilate_valid(c.engine, c.server, c.writer_for)  # the dataset's side first
    assert c.writer.n_staged == 2
    assert distrust_reporter(c.engine, cheat, "again") == 0  # nothing more to withdraw: idempotent
    while _do(c, honest, NEVER):
        pass
    assimilate_valid(c.engine, c.server, c.writer_for)
    c.writer.finalize()
    got = mlc.dataset.open(c.writer.path)
    assert verify_dataset(c.writer.path).ok
    withdrawn = got.manifest["withdrawn"]
    assert sorted(e["net_id"] for e in withdrawn) == sorted(members)
    assert all((c.writer.path / e["file"]).is_file() for e in withdrawn)
    assert "Withdrawn networks" in (c.writer.path / "README.md").read_text()

    honest_run = make_setup(**ONE_UNIT, name="honest")  # the same experiment, every unit honest
    (owner,) = _hosts(honest_run, 1, "x")
    while _do(honest_run, owner, NEVER):
        pass
    assimilate_valid(honest_run.engine, honest_run.server, honest_run.writer_for)
    honest_run.writer.finalize()
    want = mlc.dataset.open(honest_run.writer.path)
    order = want.networks["net_id"].tolist()
    assert got.networks["net_id"].tolist() == order
    np.testing.assert_array_equal(got.weights(), want.weights())


def _spec(c: Setup, wu_id: str) -> WorkUnitSpec:
    return WorkUnitSpec.from_json(_unit(c, wu_id).spec_json)


def test_a_unit_no_host_can_replicate_any_more_is_taken_on_its_own_checks(one_unit: Setup) -> None:
    c = one_unit
    first, peer = _hosts(c, 2, _class_of(c))
    (wu_id,) = _do(c, first, ALWAYS)
    assert _unit(c, wu_id).quorum == 2
    assert apply_transitions(c.engine) == 0  # its peer could still take it
    distrust_reporter(c.engine, peer, "caught elsewhere")  # the only other host of the class
    assert apply_transitions(c.engine) == 1
    unit = _unit(c, wu_id)
    assert (unit.state, unit.quorum, unit.replica_class) == (WUState.VALID, 1, None)
