"""Where the database and the dataset disagree, which is right, and what to do about it.

The database says which networks are finished; the dataset's staged files hold them, each checked
against the content hash it was written with. They can disagree after a crash at the wrong instant,
a damaged disk, or a hand edit of either, and a run that believed one of them blindly looped forever
("19/20 ... re-run to resume"), reported a count the dataset contradicts, or retrained everything
and then refused to store it. `check_consistency` compares the two (read only: `mlc status` shows its
findings); `reconcile` applies the remedies that lose nothing before `mlc run` trains:

- a staged file is damaged: it is set aside (`*.damaged-N`), and a finished network is trained
  again from its seed;
- a network is staged (its file passing its hash) but its row is missing or not finished, and no
  live unit trains it: the row is restored, finished, from the staged record;
- a network trains in the database, but no live unit trains it and nothing is staged: it is trained
  again from its seed;
- a network is finished in the database but not staged at all: refused (the dataset was deleted or
  replaced; put it back, or start again).

A network in a live unit (ready, leased, reported, valid) is consistent whatever is staged: a crash
between staging a network and committing its unit leaves exactly that, and the next pass repeats it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._experiments import Experiment, mark_finished_if_complete, retrain_from_seed
from mlc.coordinator._schema import (
    NetworkState,
    WUState,
    networks,
    work_units,
)
from mlc.errors import StateError
from mlc.store import MANIFEST_FILE, scan_staged, set_aside_staged
from mlc.work import WorkUnitSpec

__all__ = ["Consistency", "check_consistency", "orphaned_dataset", "reconcile"]

_LIVE = (WUState.READY, WUState.LEASED, WUState.REPORTED, WUState.VALID)
_SHOWN = 3


@dataclass
class Consistency:
    """What `check_consistency` found, by kind (each a sorted list of net_ids)."""

    damaged: dict[str, str] = field(default_factory=dict)  # net_id -> why its staged file is refused
    retrain_damaged: list[str] = field(default_factory=list)  # finished, but the staged file is damaged
    adopt: list[str] = field(default_factory=list)  # staged, but the database does not say finished
    stuck: list[str] = field(default_factory=list)  # training, with no live unit and nothing staged
    lost: list[str] = field(default_factory=list)  # finished, with no staged file at all
    staged: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.adopt or self.stuck or self.lost)

    def findings(self) -> list[str]:
        """One line per kind: which networks, and what `mlc run` does about them (or you must)."""
        lines = []
        if self.damaged:
            first = min(self.damaged)
            lines.append(f"{_some(self.damaged)} damaged in the dataset's staging/ ({self.damaged[first]}); "
                         "`mlc run` sets the files aside and trains the finished ones again")
        if self.adopt:
            lines.append(f"{_some(self.adopt)} finished in the dataset but not in the database (its rows "
                         "missing or set back); `mlc run` restores them from the dataset's records")
        if self.stuck:
            lines.append(f"{_some(self.stuck)} training in the database with no work unit to train them "
                         "and nothing in the dataset; `mlc run` trains them again from their seeds")
        if self.lost:
            lines.append(f"{_some(self.lost)} finished in the database but missing from the dataset: "
                         "was the dataset deleted or replaced? Put it back, or start again in a new "
                         "--workdir")
        return lines


def _some(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return f"{len(ids)} network{'s' * (len(ids) != 1)} ({', '.join(ids[:_SHOWN])}{more})"


def orphaned_dataset(dataset_dir: Path, database: Path) -> str | None:
    """Why a run must not start here, where the dataset has networks and the database is gone (a new
    database would train them all again and then refuse to store them); None where that is not so."""
    if database.exists() or not (dataset_dir / MANIFEST_FILE).is_file():
        return None
    staged, damaged = scan_staged(dataset_dir)
    if not staged and not damaged:
        return None
    return (f"{dataset_dir} holds {len(staged) + len(damaged)} networks but there is no database "
            f"{database}: it was deleted or moved. Put it back to resume; or, to train everything "
            f"again, move {dataset_dir} away first")


def _database_view(engine: Engine, exp: Experiment) -> tuple[dict[str, str], set[str]]:
    """({net_id: state} of the experiment's networks, the net_ids its live units train)."""
    with reading(engine) as conn:
        states = dict(conn.execute(
            select(networks.c.net_id, networks.c.state).where(networks.c.experiment_id == exp.id)).all())
        specs = conn.execute(select(work_units.c.spec_json).where(
            work_units.c.experiment_id == exp.id, work_units.c.state.in_(_LIVE))).scalars().all()
    live = {m.net_id for spec in specs for m in WorkUnitSpec.from_json(spec).members}
    return states, live


def check_consistency(engine: Engine, exp: Experiment, dataset_dir: Path) -> Consistency:
    """Compare the database's networks of `exp` with the staged files in `dataset_dir` (read only)."""
    staged, damaged = scan_staged(dataset_dir)
    states, live = _database_view(engine, exp)
    finished = {n for n, s in states.items() if s == NetworkState.FINISHED}
    return Consistency(
        damaged=damaged,
        retrain_damaged=sorted(finished & set(damaged) - live),
        adopt=sorted(n for n in staged if states.get(n) != NetworkState.FINISHED and n not in live),
        stuck=sorted(n for n, s in states.items()
                     if s == NetworkState.TRAINING and n not in live and n not in staged),
        lost=sorted(finished - set(staged) - set(damaged)),
        staged=staged,
    )


def reconcile(engine: Engine, exp: Experiment, dataset_dir: Path) -> list[str]:
    """Apply the remedies of `check_consistency`'s findings (see the module's table); returns what
    was done, one line each. Raises StateError, changing nothing, where networks were lost."""
    found = check_consistency(engine, exp, dataset_dir)
    if found.lost:
        raise StateError(f"{dataset_dir} lacks {found.findings()[-1]}")
    done = found.findings()
    retrain = sorted({*found.retrain_damaged, *found.stuck})
    with transaction(engine) as conn:  # the database first: a crash before the files are set aside
        _adopt(conn, exp, [found.staged[n] for n in found.adopt])  # leaves live units and damaged files
        retrain_from_seed(conn, exp, retrain)
        mark_finished_if_complete(conn, exp.id, utcnow())
    for net_id in sorted(found.damaged):
        set_aside_staged(dataset_dir, net_id)
    return done


def _adopt(conn: Connection, exp: Experiment, records: list[dict[str, Any]]) -> None:
    """Each record's network row, finished, as the staged record has it (inserted where missing)."""
    for r in records:
        values = dict(state=NetworkState.FINISHED, epochs=r["epochs"], converged=bool(r["converged"]),
                      wall_time_s=float(r["wall_time_s"]), work_units=json.dumps(r["work_units"]))
        changed = conn.execute(networks.update().where(
            networks.c.experiment_id == exp.id, networks.c.net_id == r["net_id"]).values(**values)).rowcount
        if not changed:
            conn.execute(networks.insert().values(experiment_id=exp.id, net_id=r["net_id"], task=r["task"],
                                                  idx=r["index"], net_seed=r["net_seed"], **values))
