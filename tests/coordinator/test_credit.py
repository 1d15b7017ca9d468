"""Credit, on real databases: granted once per valid result from its unit's FLOP count, to the host
and its volunteer, revoked when the result is voided; the recent average's decay, by itself."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
import torch
from coordinator_setup import Setup
from sqlalchemy import select

from mlc.coordinator import (
    create_account,
    distrust_reporter,
    experiment_detail,
    host_detail,
    lease_work,
    link_host,
    register_host,
    report_result,
    settle_credit,
    unit_credit,
    unit_flop,
    validate_pending,
    volunteer_detail,
)
from mlc.coordinator._credit import COBBLESTONE_FLOP, RAC_HALF_LIFE_DAYS, decayed_rac
from mlc.coordinator._schema import results
from mlc.models import MLDS_GRU
from mlc.work import Member, run_work_units

SHARE = math.log(2) / RAC_HALF_LIFE_DAYS  # of a grant, in the recent average right after it


def _valid_result_of_a_linked_host(c: Setup) -> tuple[int, int, float]:
    """A host linked to a volunteer trains one unit and uploads it, and the validator judges it;
    returns (host id, account id, the unit's credit)."""
    account, key = create_account(c.engine, "Ada", "ada@example.org")
    host, _token = register_host(c.engine, "h1", {"device": "cpu", "cpus": 4096})  # claims don't count
    link_host(c.engine, host.id, key)
    (unit,) = lease_work(c.engine, host.owner, 2, 600.0, experiment_id=c.exp.id)
    (result,) = run_work_units([unit], torch.device("cpu"))
    report_result(c.engine, result.wu_id, result.to_bytes(), host.owner)
    assert validate_pending(c.engine, c.server) == (1, 0)
    return host.id, account.id, unit_credit(unit.spec)


def test_a_valid_result_earns_its_units_flop_count_once_for_host_and_volunteer(coord: Setup) -> None:
    host_id, account_id, credit = _valid_result_of_a_linked_host(coord)
    spec_flop = 2 * 2 * (MLDS_GRU.train_flop(32, 10) + MLDS_GRU.forward_flop(8, 10))  # 2 nets x 2 epochs
    assert credit == pytest.approx(spec_flop / COBBLESTONE_FLOP)
    assert settle_credit(coord.engine) == (1, 0)
    assert settle_credit(coord.engine) == (0, 0)  # nothing is granted twice
    host, volunteer = host_detail(coord.engine, host_id), volunteer_detail(coord.engine, account_id)
    for holder in (host, volunteer):
        assert holder.credit == pytest.approx(credit)
        assert holder.rac == pytest.approx(credit * SHARE, rel=1e-4)
        assert holder.units_done == 1 and holder.validity_rate == 1.0
    assert [h.id for h in volunteer.hosts] == [host_id] and volunteer.trust == {"new": 1}


def test_a_voided_result_loses_its_credit(coord: Setup) -> None:
    host_id, account_id, _credit = _valid_result_of_a_linked_host(coord)
    settle_credit(coord.engine)
    assert distrust_reporter(coord.engine, f"host:{host_id}", "test") == 1  # valid, not assimilated
    assert settle_credit(coord.engine) == (0, 1)
    assert settle_credit(coord.engine) == (0, 0)
    for holder in (host_detail(coord.engine, host_id), volunteer_detail(coord.engine, account_id)):
        assert holder.credit == 0 and holder.rac == pytest.approx(0, abs=1e-12)
        assert holder.validity_rate == 0.0
    with coord.engine.connect() as conn:
        assert conn.execute(select(results.c.credit)).scalars().all() == [0.0]
    assert experiment_detail(coord.engine, coord.exp.name).rejections == {"voided": 1}


def test_local_results_earn_nobody_credit(coord: Setup) -> None:
    (unit,) = lease_work(coord.engine, "local", 2, 600.0, experiment_id=coord.exp.id)
    (result,) = run_work_units([unit], torch.device("cpu"))
    report_result(coord.engine, result.wu_id, result.to_bytes(), "local")
    validate_pending(coord.engine, coord.server)
    assert settle_credit(coord.engine) == (0, 0)


def test_a_continuation_is_counted_for_the_epochs_left_to_it(coord: Setup) -> None:
    (unit,) = lease_work(coord.engine, "local", 2, 600.0, experiment_id=coord.exp.id)
    members = tuple(Member(m.net_id, m.task, m.index, m.net_seed, start_epoch=2) for m in unit.spec.members)
    later = unit.spec.__class__(**{**vars(unit.spec), "members": members})
    assert unit_flop(later) * 2 == unit_flop(unit.spec)  # max_epochs 3: one epoch left of the two


def test_the_recent_average_halves_every_week() -> None:
    start = datetime(2026, 1, 1)
    assert decayed_rac(8.0, start, start + timedelta(days=7)) == pytest.approx(4.0)
    assert decayed_rac(8.0, start, start + timedelta(days=21)) == pytest.approx(1.0)
    assert decayed_rac(8.0, None, start) == 8.0


def test_a_classifier_unit_earns_its_variant_s_flop_count(coord: Setup) -> None:
    """DS4 units (digits classifiers) are counted too, in the layout of their sweep variant: a linear
    layer of n_in x n_out costs 2 n_in n_out FLOPs an image forward, three times that in training."""
    (unit,) = lease_work(coord.engine, "local", 2, 600.0, experiment_id=coord.exp.id)
    mlp = unit.spec.__class__(**{**vars(unit.spec), "model": "digits-mlp",
                                 "model_settings": {"width": 8, "depth": 1}})
    per_image = 2 * (64 * 8 + 8 * 10)
    epochs = sum(min(mlp.epochs, mlp.train.max_epochs - m.start_epoch) for m in mlp.members)
    assert unit_flop(mlp) == epochs * per_image * (3 * mlp.data.n_train + mlp.data.n_val)
    wider = mlp.__class__(**{**vars(mlp), "model_settings": {"width": 16, "depth": 1}})
    assert unit_flop(wider) == 2 * unit_flop(mlp)
    for model in ("digits-cnn", "digits-transformer"):
        assert unit_credit(mlp.__class__(**{**vars(mlp), "model": model, "model_settings": {}})) > 0


def test_a_unit_voided_after_the_assimilator_listed_it_is_skipped(coord: Setup) -> None:
    """The assimilator lists the VALID units, then reads each in its own transaction: a host distrusted
    in between takes its unit back to the queue, and the pass skips it instead of failing on its
    voided payload."""
    from mlc.coordinator._assimilator import _assimilate_one

    host_id, _account_id, _credit = _valid_result_of_a_linked_host(coord)
    (wu_id,) = coord.engine.connect().execute(select(results.c.wu_id)).scalars()
    assert distrust_reporter(coord.engine, f"host:{host_id}", "test") == 1
    assert _assimilate_one(coord.engine, wu_id, coord.server, coord.writer_for) == 0
