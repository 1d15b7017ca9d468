"""Creating an experiment from a preset: its networks and first work units, in one transaction.

Re-creating an experiment that exists resumes it, provided the settings are the same; different
settings under the same name are refused rather than silently mixed into one dataset. The one change
allowed is more networks per task: the experiment grows (MLDS releases grow by milestones), keeping
every network it has and adding the new indices with the seeds a fresh run would give them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, case, exists, func, select

from mlc import tasks
from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._schema import (
    ExperimentState,
    NetworkState,
    WUState,
    experiments,
    history,
    networks,
    work_units,
)
from mlc.errors import ConfigError, StateError, UnknownNameError
from mlc.tasks import SharedData
from mlc.work import Member, WorkUnitSpec

if TYPE_CHECKING:  # the lease and report path reads no configs: it must not load torch with them
    from mlc.work import ExperimentConfig, Variant

__all__ = [
    "Experiment",
    "build_shared_data",
    "create_experiment",
    "ended_experiments",
    "get_experiment",
    "get_experiment_by_id",
    "grow_experiment",
    "insert_work_unit",
    "list_experiments",
    "make_spec",
    "mark_finished_if_complete",
    "retrain_from_seed",
]


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    config: ExperimentConfig
    data_digest: str
    layout_id: str
    dataset_dir: Path


def build_shared_data(config: ExperimentConfig) -> SharedData:
    return tasks.shared_data_for_tasks(config.data, config.tasks, config.task_params)


def make_spec(
    exp: Experiment, wu_id: str, members: list[Member], parent: str | None, variant: Variant | None = None
) -> WorkUnitSpec:
    """The spec of a unit training `members` under `variant`'s settings (the experiment's own when
    None: an experiment without a sweep)."""
    c = exp.config
    variant = variant or c.variants[0]
    return WorkUnitSpec(
        wu_id=wu_id,
        experiment=exp.name,
        model=c.model,
        layout_id=c.layout_of(variant).layout_id,
        train=variant.train,
        model_settings=variant.model_settings,
        data=c.data,
        data_digest=exp.data_digest,
        tasks=c.tasks,
        members=tuple(members),
        epochs=c.epochs_per_wu,
        parent=parent,
        task_params=c.task_params,
        segments=min(c.replay_segments, c.epochs_per_wu),
    )


def insert_work_unit(conn: Connection, exp: Experiment, spec: WorkUnitSpec, state_blob: bytes | None) -> None:
    seq = conn.execute(
        select(work_units.c.seq)
        .where(work_units.c.experiment_id == exp.id)
        .order_by(work_units.c.seq.desc())
        .limit(1)
    ).scalar()
    now = utcnow()
    conn.execute(
        work_units.insert().values(
            id=spec.wu_id,
            experiment_id=exp.id,
            seq=(seq or 0) + 1,
            parent_id=spec.parent,
            spec_json=spec.to_json(),
            state_blob=state_blob,
            state=WUState.READY,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
    )


def mark_finished_if_complete(conn: Connection, experiment_id: int, now: datetime) -> None:
    """Set the experiment's finished_at once none of its networks is still training."""
    training = (
        select(networks.c.net_id)
        .where(networks.c.experiment_id == experiment_id, networks.c.state == NetworkState.TRAINING)
        .limit(1)
    )
    conn.execute(
        experiments.update()
        .where(experiments.c.id == experiment_id, experiments.c.finished_at.is_(None), ~exists(training))
        .values(
            finished_at=now,
            state=case(
                (experiments.c.state == ExperimentState.CANCELLED, experiments.c.state),
                else_=ExperimentState.FINISHED.value,
            ),
        )
    )


def ended_experiments(engine: Engine) -> list[str]:
    """Names of the experiments that will train nothing more: finished or cancelled."""
    ended = (ExperimentState.FINISHED, ExperimentState.CANCELLED)
    with reading(engine) as conn:
        query = select(experiments.c.name).where(experiments.c.state.in_(ended)).order_by(experiments.c.id)
        return list(conn.execute(query).scalars())


def _row_to_experiment(row: object) -> Experiment:
    from mlc.work import ExperimentConfig

    try:
        config = ExperimentConfig.from_dict(json.loads(row.config_json))  # type: ignore[attr-defined]
    except ConfigError as exc:  # stored by an older version, or by hand, under laxer rules
        raise StateError(
            f"experiment {row.name!r} in this database has a config this version refuses ({exc}); "  # type: ignore[attr-defined]
            "train it again in a new workdir, or with the version that stored it"
        ) from None
    return Experiment(
        id=row.id,
        name=row.name,  # type: ignore[attr-defined]
        config=config,
        data_digest=row.data_digest,
        layout_id=row.layout_id,  # type: ignore[attr-defined]
        dataset_dir=Path(row.dataset_dir),  # type: ignore[attr-defined]
    )


def get_experiment(engine: Engine, name: str) -> Experiment:
    with reading(engine) as conn:
        row = conn.execute(select(experiments).where(experiments.c.name == name)).first()
    if row is None:
        raise UnknownNameError(f"no experiment {name!r} in this database")
    return _row_to_experiment(row)


def get_experiment_by_id(conn: Connection, experiment_id: int) -> Experiment:
    """The experiment of a row's `experiment_id`, read in the caller's transaction."""
    row = conn.execute(select(experiments).where(experiments.c.id == experiment_id)).one()
    return _row_to_experiment(row)


def list_experiments(engine: Engine) -> list[Experiment]:
    with reading(engine) as conn:
        rows = conn.execute(select(experiments).order_by(experiments.c.id)).all()
    return [_row_to_experiment(r) for r in rows]


def create_experiment(
    engine: Engine, config: ExperimentConfig, dataset_dir: Path, *, grow: bool = False
) -> tuple[Experiment, bool]:
    """The experiment `config.name`, created with all its networks and first work units if new.

    Returns (experiment, created). With `grow`, an existing experiment asked for with more networks
    per task grows (`grow_experiment`: the caller must then reopen its dataset writer with the new
    config, as a local run does); any other change of settings is a StateError naming the setting.
    """
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    with reading(engine) as conn:
        row = conn.execute(select(experiments).where(experiments.c.name == config.name)).first()
    if row is not None:
        if row.config_json != config_json:
            stored = json.loads(row.config_json)
            if grow and _only_more_networks(stored, config.to_dict()):
                return grow_experiment(engine, _row_to_experiment(row), config), False
            raise StateError(_settings_differ(config.name, stored, config.to_dict(), grow))
        return _row_to_experiment(row), False
    from mlc.work import check_resources

    check_resources(config)  # memory, before the rows and the data are built
    data = build_shared_data(config)
    layouts = config.layouts
    layout_id = layouts[0].layout_id  # each unit's spec names its own variant's layout
    with transaction(engine) as conn:
        exp_id = conn.execute(
            experiments.insert().values(
                name=config.name,
                config_json=config_json,
                data_digest=data.digest(),
                layout_id=layout_id,
                n_params=layouts[0].n_params if len(layouts) == 1 else None,  # unknown: a width sweep
                dataset_dir=str(dataset_dir),
                created_at=utcnow(),
            )
        ).inserted_primary_key[0]
        exp = Experiment(exp_id, config.name, config, data.digest(), layout_id, dataset_dir)
        _insert_networks_and_units(conn, exp)
    return exp, True


def grow_experiment(engine: Engine, exp: Experiment, config: ExperimentConfig) -> Experiment:
    """Grow `exp` to `config.networks_per_task` (more than it has; every other setting the same), in
    one transaction: the networks it has stay as they are, indices from its old count up are added
    with their own seeds (those of a fresh run with the new count, as seeds depend only on the preset
    seed, task and index), their first work units are queued, and a finished experiment runs again.
    A cancelled experiment is refused: cancelling is for good."""
    old = exp.config.networks_per_task
    grown = Experiment(exp.id, exp.name, config, exp.data_digest, exp.layout_id, exp.dataset_dir)
    with transaction(engine) as conn:
        state = conn.execute(select(experiments.c.state).where(experiments.c.id == exp.id)).scalar_one()
        if state == ExperimentState.CANCELLED:
            raise StateError(f"experiment {exp.name!r} was cancelled; it cannot grow (start a new one)")
        roots = conn.execute(
            select(func.count())
            .select_from(work_units)
            .where(work_units.c.experiment_id == exp.id, work_units.c.parent_id.is_(None))
        ).scalar_one()
        conn.execute(
            experiments.update()
            .where(experiments.c.id == exp.id)
            .values(
                config_json=json.dumps(config.to_dict(), sort_keys=True),
                finished_at=None,
                state=case(
                    (experiments.c.state == ExperimentState.FINISHED, ExperimentState.RUNNING.value),
                    else_=experiments.c.state,
                ),
            )
        )
        _insert_networks_and_units(conn, grown, first_index=old, first_group=roots)
    return grown


def _only_more_networks(stored: dict[str, object], wanted: dict[str, object]) -> bool:
    """Whether `wanted` is `stored` with a larger networks_per_task and nothing else changed."""
    more = wanted["networks_per_task"] > stored["networks_per_task"]  # type: ignore[operator]
    # a sweep numbers its networks variant by variant (v * networks_per_task + i): it cannot grow
    same_otherwise = {**stored, "networks_per_task": wanted["networks_per_task"]} == wanted
    return more and "sweep" not in stored and same_otherwise


def _insert_networks_and_units(
    conn: Connection, exp: Experiment, first_index: int = 0, first_group: int = 0
) -> None:
    """The networks of indices `first_index`.. of every task and their first work units, numbered
    from group `first_group` (the units already there keep theirs)."""
    c = exp.config
    rows, group = [], first_group
    for task, (v, variant) in itertools.product(c.tasks, enumerate(c.variants)):
        # a variant's networks take indices v*N .. (v+1)*N - 1 (growth, without a sweep: from first_index)
        indices = range(v * c.networks_per_task + first_index, (v + 1) * c.networks_per_task)
        members = [Member(c.net_id(task, i), task, i, c.net_seed(task, i)) for i in indices]
        rows += [
            dict(
                net_id=m.net_id,
                experiment_id=exp.id,
                task=task,
                idx=m.index,
                net_seed=m.net_seed,
                state=NetworkState.TRAINING,
                epochs=0,
                converged=False,
                wall_time_s=0.0,
                work_units="[]",
            )
            for m in members
        ]
        conn.execute(networks.insert(), rows)
        rows = []
        for start in range(0, len(members), c.networks_per_wu):
            wu_id = f"{exp.name}-g{group:06d}-p000"
            spec = make_spec(exp, wu_id, members[start : start + c.networks_per_wu], None, variant)
            insert_work_unit(conn, exp, spec, None)
            group += 1


def retrain_from_seed(
    conn: Connection, exp: Experiment, net_ids: list[str], *, together: bool = False
) -> list[str]:
    """Each network back to epoch 0 (its seed gives it the same start), its stored history dropped,
    in a fresh unit of its own, or (`together`) in as few units as its experiment's networks_per_wu
    and settings allow, and the experiment running again (a cancelled one stays cancelled: nothing is
    retrained there); returns the new units' ids."""
    if not net_ids:
        return []
    rows = conn.execute(select(networks).where(
        networks.c.experiment_id == exp.id, networks.c.net_id.in_(net_ids))).all()
    seq = conn.execute(select(work_units.c.seq).where(work_units.c.experiment_id == exp.id)
                       .order_by(work_units.c.seq.desc()).limit(1)).scalar() or 0
    cancelled = conn.execute(select(experiments.c.state).where(
        experiments.c.id == exp.id)).scalar() == ExperimentState.CANCELLED
    for row in rows:
        conn.execute(networks.update().where(
            networks.c.experiment_id == exp.id, networks.c.net_id == row.net_id).values(
            state=NetworkState.FAILED if cancelled else NetworkState.TRAINING, epochs=0, converged=False,
            wall_time_s=0.0, work_units="[]"))
        conn.execute(history.delete().where(
            history.c.experiment_id == exp.id, history.c.net_id == row.net_id))
    if cancelled:
        return []
    groups: dict[int, list[Member]] = {}
    for row in sorted(rows, key=lambda r: r.net_id):
        variant = exp.config.variants.index(exp.config.variant_of(row.idx))
        groups.setdefault(variant if together else len(groups), []).append(
            Member(row.net_id, row.task, row.idx, row.net_seed))
    size = exp.config.networks_per_wu if together else 1
    created = []
    for members in groups.values():
        variant = exp.config.variant_of(members[0].index)
        for start in range(0, len(members), size):
            seq += 1
            wu_id = f"{exp.name}-r{seq:06d}-p000"
            spec = make_spec(exp, wu_id, members[start:start + size], None, variant)
            insert_work_unit(conn, exp, spec, None)
            created.append(wu_id)
    conn.execute(experiments.update().where(
        experiments.c.id == exp.id, experiments.c.state == ExperimentState.FINISHED).values(
        finished_at=None, state=ExperimentState.RUNNING))
    return created


def move_dataset(engine: Engine, experiment_id: int, dataset_dir: Path) -> None:
    """Record that the experiment's dataset now lives at `dataset_dir` (its workdir was moved)."""
    with transaction(engine) as conn:
        conn.execute(
            experiments.update().where(experiments.c.id == experiment_id).values(dataset_dir=str(dataset_dir))
        )


def stored_network_ids(engine: Engine, experiment_id: int) -> set[str]:
    """The networks assimilated into the experiment's dataset (finished; failed ones are not stored)."""
    query = select(networks.c.net_id).where(
        networks.c.experiment_id == experiment_id, networks.c.state == NetworkState.FINISHED
    )
    with reading(engine) as conn:
        return set(conn.execute(query).scalars())


def _flat(settings: dict[str, object], prefix: str = "") -> dict[str, object]:
    """{"train": {"max_epochs": 3}} -> {"train.max_epochs": 3}, as the CLI's overrides name them."""
    out: dict[str, object] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _settings_differ(name: str, stored: dict[str, object], wanted: dict[str, object], grow: bool) -> str:
    stored, wanted = _flat(stored), _flat(wanted)
    diffs = [
        f"{k}: stored {stored.get(k)!r}, asked {wanted.get(k)!r}"
        for k in sorted(set(stored) | set(wanted))
        if stored.get(k) != wanted.get(k)
    ]
    if not grow:
        return (
            f"experiment {name!r} already exists here with other settings ({'; '.join(diffs)}); "
            "re-run with the same settings to resume, or use another --workdir"
        )
    fewer = ""
    if wanted.get("networks_per_task", 0) < stored.get("networks_per_task", 0):  # type: ignore[operator]
        fewer = (
            "; an experiment grows but never shrinks: to release fewer networks per task, use "
            "`mlc dataset export --per-task N`"
        )
    return (
        f"experiment {name!r} already exists here with other settings ({'; '.join(diffs)}); "
        f"re-run with the same settings to resume, a larger networks_per_task to grow it, or use "
        f"another --workdir{fewer}"
    )
