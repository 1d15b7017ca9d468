"""The assimilator daemon's pass: fold each validated result into the experiment.

Per unit, in this order: (1) stage every network that stopped into the dataset (idempotent files);
(2) in ONE transaction, append the history rows, update the networks, create the continuation unit
for the networks still training, mark the unit done (and the experiment finished when no network
trains any more), close results still pending as superseded, and drop the stored payloads. A crash
between (1) and (2) repeats (1) with identical records, which the store recognises; a crash inside
(2) rolls it back whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace

import numpy as np
from sqlalchemy import Connection, Engine, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._experiments import Experiment, insert_work_unit, make_spec, mark_finished_if_complete
from mlc.coordinator._schema import NetworkState, Verdict, WUState, history, networks, results, work_units
from mlc.coordinator._serverdata import ServerData
from mlc.coordinator._withdrawal import apply_withdrawals
from mlc.store import DatasetWriter
from mlc.work import (
    FinishedNetwork,
    Member,
    Variant,
    WorkUnitResult,
    WorkUnitSpec,
    encode_state,
    triggered_reevaluation,
)

__all__ = ["assimilate_valid"]

WriterFor = Callable[[Experiment], DatasetWriter]


def assimilate_valid(engine: Engine, server: ServerData, writer_for: WriterFor) -> int:
    """Assimilate every unit in state VALID, after taking withdrawn networks out of their datasets;
    returns how many networks finished in this pass."""
    apply_withdrawals(engine, writer_for)
    with reading(engine) as conn:
        ids = (
            conn.execute(
                select(work_units.c.id).where(work_units.c.state == WUState.VALID).order_by(work_units.c.seq)
            )
            .scalars()
            .all()
        )
    return sum(_assimilate_one(engine, wu_id, server, writer_for) for wu_id in ids)


def _assimilate_one(engine: Engine, wu_id: str, server: ServerData, writer_for: WriterFor) -> int:
    with reading(engine) as conn:
        unit = conn.execute(
            select(work_units).where(work_units.c.id == wu_id, work_units.c.state == WUState.VALID)
        ).one_or_none()
        payload = conn.execute(
            select(results.c.payload)
            .where(results.c.wu_id == wu_id, results.c.verdict == Verdict.VALID)
            .order_by(results.c.id)
        ).scalar()
        if unit is None or payload is None:  # judged afresh since the pass listed it (a host distrusted)
            return 0
        spec = WorkUnitSpec.from_json(unit.spec_json)
        result = WorkUnitResult.from_bytes(payload)
        net_rows = {
            r.net_id: r
            for r in conn.execute(
                select(networks).where(
                    networks.c.experiment_id == unit.experiment_id, networks.c.net_id.in_(result.members)
                )
            )
        }
        past = _past_history(conn, unit.experiment_id, result.members)
        checks = _unit_checks(
            conn, {w for m in spec.members for w in json.loads(net_rows[m.net_id].work_units)} | {wu_id}
        )
    exp = server.experiment(spec.experiment)
    share = result.provenance.wall_time_s / len(spec.members)  # the unit's wall time, shared equally
    stopped = [m for m in range(len(spec.members)) if bool(result.state.stopped[m])]
    metrics = _metrics(server, spec, result, stopped)
    finished: list[FinishedNetwork] = []
    triggered = _triggered(server, exp, spec, result, stopped)
    for m in stopped:
        net = spec.members[m].net_id
        record = _finished_record(
            exp, spec, result, m, spec.members[m], net_rows[net], past[net], share, checks
        )
        trojan, clean = triggered.get(m, (None, None))
        finished.append(
            replace(record, extra=metrics[m], trojan_accuracy=trojan, clean_accuracy_triggered=clean)
        )
    writer = writer_for(exp)
    for record in finished:
        writer.add(record)
    with transaction(engine) as conn:
        state = conn.execute(
            select(work_units.c.state).where(work_units.c.id == wu_id).with_for_update(key_share=True)
        ).scalar()
        if state != WUState.VALID:  # another assimilator finished it first
            return 0
        now = utcnow()
        _store_history(conn, exp, spec, result)
        _update_networks(conn, exp, spec, result, net_rows, share)
        _continue(conn, exp, spec, result)
        mark_finished_if_complete(conn, exp.id, now)
        conn.execute(
            work_units.update()
            .where(work_units.c.id == wu_id)
            .values(
                state=WUState.DONE,
                state_blob=None,
                lease_owner=None,
                lease_expires_at=None,
                provenance_json=json.dumps(asdict(result.provenance)),
                updated_at=now,
            )
        )
        _close_results(conn, wu_id)
    return len(finished)


def _metrics(
    server: ServerData, spec: WorkUnitSpec, result: WorkUnitResult, rows: list[int]
) -> dict[int, dict[str, float]]:
    """The task family's metrics beyond loss and accuracy (DS4: attack success rate) of the final
    weights of the networks `rows`, measured on the server's own validation data, by row."""
    if not rows:
        return {}
    import torch

    data, population = server.arrays(spec.experiment), server.population(spec.experiment, spec.model_settings)
    params = result.state.params[torch.tensor(rows)].to(data.device)
    task_rows = data.task_rows([spec.members[m].task for m in rows])
    measured = data.metrics(population, params, task_rows, spec.train.batch_size)  # type: ignore[arg-type]
    return {m: {k: float(v[i]) for k, v in measured.items()} for i, m in enumerate(rows)}


def _triggered(
    server: ServerData, exp: Experiment, spec: WorkUnitSpec, result: WorkUnitResult, rows: list[int]
) -> dict[int, tuple[float | None, float | None]]:
    """MLDS only: the trojan and clean accuracy on held-out triggered sequences of the members `rows`
    (those that finished), measured here from the validated weights alone (never taken from a
    worker)."""
    if exp.config.model != "mlds-gru" or not rows:
        return {}
    population = server.population(spec.experiment, spec.model_settings)
    return triggered_reevaluation(spec, result, population, server.trigger_targets(spec.experiment), rows)


def _close_results(conn: Connection, wu_id: str) -> None:
    """Results still pending (uploaded while another was being judged) are superseded, not judged."""
    conn.execute(
        results.update()
        .where(results.c.wu_id == wu_id, results.c.verdict == Verdict.PENDING)
        .values(verdict=Verdict.SUPERSEDED, reason=f"superseded: {wu_id} was already assimilated")
    )
    # last: the history and the dataset hold what the payloads did
    conn.execute(results.update().where(results.c.wu_id == wu_id).values(payload=None))


def _past_history(conn: Connection, experiment_id: int, net_ids: tuple[str, ...]) -> dict[str, np.ndarray]:
    out: dict[str, list[tuple[float, float, float]]] = {n: [] for n in net_ids}
    query = (
        select(history)
        .where(history.c.experiment_id == experiment_id, history.c.net_id.in_(net_ids))
        .order_by(history.c.net_id, history.c.epoch)
    )
    for r in conn.execute(query):
        out[r.net_id].append((r.train_loss, r.val_loss, r.val_accuracy))
    return {k: np.asarray(v, dtype=np.float32).reshape(-1, 3) for k, v in out.items()}


def _unit_checks(conn: Connection, wu_ids: set[str]) -> dict[str, tuple[str, int, int]]:
    """Per unit: who trained its valid result (`host:ID` as the server knows the host, or the
    executor's kind: `local`, `ray`; `host:A+host:B` where a replica agreed), how many of its
    segments the validator replayed (the most of any agreeing result), of how many."""
    rows = conn.execute(
        select(results.c.wu_id, results.c.reporter, results.c.replayed, work_units.c.spec_json)
        .join(work_units, work_units.c.id == results.c.wu_id)
        .where(results.c.wu_id.in_(sorted(wu_ids)), results.c.verdict == Verdict.VALID)
        .order_by(results.c.id)
    )
    out: dict[str, tuple[str, int, int]] = {}
    for r in rows:
        who, replayed, segments = (
            _trainer(r.reporter),
            r.replayed or 0,
            WorkUnitSpec.from_json(r.spec_json).segments,
        )
        if r.wu_id in out:  # a replica that agreed (outvoted results are no longer valid)
            first, most, _ = out[r.wu_id]
            who, replayed = (first if who in first.split("+") else f"{first}+{who}"), max(most, replayed)
        out[r.wu_id] = (who, replayed, segments)
    return out


def _trainer(reporter: str | None) -> str:
    if not reporter:
        return "unknown"
    kind, _, rest = reporter.partition(":")
    return f"host:{rest}" if kind == "host" else kind  # a local owner's name holds its workdir: not kept


def _confirmed(checks: list[tuple[str, int, int]]) -> bool:
    """Every unit was trained by the project's own executor, replayed whole by the server (a
    replica on the server's kernel class), or agreed bit for bit by a replica host; a re-evaluation
    alone or a sampled segment is not that."""
    return bool(checks) and all(
        not who.startswith("host:") or "+" in who or (segments > 1 and replayed == segments)
        for who, replayed, segments in checks
    )


def _segment(result: WorkUnitResult, m: int) -> np.ndarray:
    return np.stack(result.history.member(m), axis=1)  # [n, 3]


def _finished_record(
    exp: Experiment,
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    m: int,
    member: Member,
    row: object,
    past: np.ndarray,
    share: float,
    checks: dict[str, tuple[str, int, int]],
) -> FinishedNetwork:
    full = np.concatenate([past, _segment(result, m)])
    units = (*json.loads(row.work_units), spec.wu_id)  # type: ignore[attr-defined]
    unit_checks = [checks.get(w, ("unknown", 0, 1)) for w in units]
    prov = result.provenance
    hyper = dict(spec.train.to_dict(), epochs_per_wu=exp.config.epochs_per_wu) | _model_settings(spec)
    return FinishedNetwork(
        net_id=member.net_id,
        dataset=exp.name,
        task=member.task,
        index=member.index,
        net_seed=member.net_seed,
        data_seed=exp.config.data.seed,
        model=exp.config.model,
        layout_id=spec.layout_id,  # its variant's (a width or depth sweep has several)
        hyperparameters=hyper,
        weights=result.state.params[m].numpy().astype(np.float32),
        train_loss=full[:, 0].copy(),
        val_loss=full[:, 1].copy(),
        val_accuracy=full[:, 2].copy(),
        converged=bool(result.state.converged[m]),
        wall_time_s=float(row.wall_time_s) + share,  # type: ignore[attr-defined]
        device_kind=prov.device_kind,
        device_name=prov.device_name,
        torch_version=prov.torch_version,
        platform=prov.platform,
        host_id=prov.host_id,
        work_units=units,
        trained_by=tuple(who for who, _, _ in unit_checks),
        replayed_segments=tuple(f"{replayed}/{segments}" for _, replayed, segments in unit_checks),
        confirmed=_confirmed(unit_checks),
    )


def _model_settings(spec: WorkUnitSpec) -> dict[str, object]:
    """A classifier family's settings (width, depth, activation, init) as its networks were built."""
    from mlc import models

    config = models.config(spec.model, spec.model_settings)
    return config.settings() if isinstance(config, models.ClassifierConfig) else {}


def _store_history(conn: Connection, exp: Experiment, spec: WorkUnitSpec, result: WorkUnitResult) -> None:
    rows = []
    for m, member in enumerate(spec.members):
        for k, (train, val, acc) in enumerate(_segment(result, m)):
            rows.append(
                dict(
                    experiment_id=exp.id,
                    net_id=member.net_id,
                    epoch=member.start_epoch + k + 1,
                    train_loss=float(train),
                    val_loss=float(val),
                    val_accuracy=float(acc),
                )
            )
    if rows:
        conn.execute(history.insert(), rows)


def _update_networks(
    conn: Connection,
    exp: Experiment,
    spec: WorkUnitSpec,
    result: WorkUnitResult,
    net_rows: dict[str, object],
    share: float,
) -> None:
    for m, member in enumerate(spec.members):
        row = net_rows[member.net_id]
        stopped = bool(result.state.stopped[m])
        conn.execute(
            networks.update()
            .where(networks.c.experiment_id == exp.id, networks.c.net_id == member.net_id)
            .values(
                state=NetworkState.FINISHED if stopped else NetworkState.TRAINING,
                epochs=int(result.state.epoch[m]),
                converged=bool(result.state.converged[m]),
                wall_time_s=float(row.wall_time_s) + share,  # type: ignore[attr-defined]
                work_units=json.dumps([*json.loads(row.work_units), spec.wu_id]),  # type: ignore[attr-defined]
            )
        )


def _continue(conn: Connection, exp: Experiment, spec: WorkUnitSpec, result: WorkUnitResult) -> None:
    going = [m for m in range(len(spec.members)) if not bool(result.state.stopped[m])]
    if not going:
        return
    members = [replace(spec.members[m], start_epoch=int(result.state.epoch[m])) for m in going]
    root, part = spec.wu_id.rsplit("-p", 1)
    variant = Variant(spec.train, spec.model_settings)  # a continuation keeps its unit's settings
    child = make_spec(exp, f"{root}-p{int(part) + 1:03d}", members, parent=spec.wu_id, variant=variant)
    insert_work_unit(conn, exp, child, encode_state(result.state.select(going), spec.wu_id))
