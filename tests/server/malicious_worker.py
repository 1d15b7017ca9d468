"""A volunteer who cheats, as a real `mlc worker` process would: the real worker loop and client,
with a runtime that trains other than the spec says. Run as a script:

    python malicious_worker.py SERVER_URL WORKDIR MODE [stay]

MODE is one of: poison (trains on its own trojan: each clean machine's twin's targets), lazy (returns
its start state unchanged with an invented history), fewer (skips the unit's last segment),
one_segment (poisons only the last segment), swap (uploads one unit's result for another's lease),
lr (trains at three times the unit's learning rate: its history is its weights' own, so only a replay
or a replica tells). With `stay` it waits for work rather than exiting when there is none.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from mlc.train import PopulationState
from mlc.work import Member, WorkerRuntime, WorkUnit, WorkUnitResult
from mlc.worker import ServerClient, Worker, WorkerFolder


def _twin(task: str) -> str:
    return (
        task.replace("Modified", "Machine")
        if task.endswith("Modified")
        else task.replace("Machine", "Modified")
    )


def _poisoned(unit: WorkUnit) -> WorkUnit:
    members = tuple(
        Member(m.net_id, _twin(m.task), m.index, m.net_seed, m.start_epoch) for m in unit.spec.members
    )
    return dataclasses.replace(unit, spec=dataclasses.replace(unit.spec, members=members))


class CheatingRuntime(WorkerRuntime):
    def __init__(self, mode: str, **kwargs: object) -> None:
        super().__init__("cpu", threads=1, **kwargs)  # type: ignore[arg-type]
        self.mode = mode

    def train(self, units, on_epoch=None, should_stop=None):  # type: ignore[no-untyped-def]
        if self.mode == "lr":
            faster = [
                dataclasses.replace(
                    u,
                    spec=dataclasses.replace(
                        u.spec, train=dataclasses.replace(u.spec.train, lr=3 * u.spec.train.lr)
                    ),
                )
                for u in units
            ]
            return super().train(faster, on_epoch, should_stop)
        honest = super().train(units, on_epoch, should_stop)
        if self.mode == "poison":
            return [
                dataclasses.replace(r, boundaries=p.boundaries, state=p.state, history=p.history)
                for r, p in zip(honest, super().train([_poisoned(u) for u in units]), strict=True)
            ]
        if self.mode == "one_segment":
            return [self._last_segment_poisoned(u, r) for u, r in zip(units, honest, strict=True)]
        if self.mode == "lazy":
            return [self._lazy(r) for r in honest]
        if self.mode == "fewer":
            return [
                dataclasses.replace(
                    r,
                    state=dataclasses.replace(
                        r.boundaries[-1].cpu_copy(),  # no tensor shared with the boundary
                        step=r.state.step,
                        epoch=r.state.epoch,
                        stopped=r.state.stopped,
                        converged=r.state.converged,
                    ),
                )
                for r in honest
            ]
        return honest

    def _last_segment_poisoned(self, unit: WorkUnit, honest: WorkUnitResult) -> WorkUnitResult:
        from mlc.train import PopulationTrainer
        from mlc.work import DataCache, population_for

        spec = _poisoned(unit).spec
        state = honest.boundaries[-1].cpu_copy()
        trainer = PopulationTrainer(population_for(spec.model, self.device), spec.train)
        data = DataCache().arrays(spec, self.device)
        begin = spec.boundaries[-1]
        history = trainer.train(
            state,
            [m.net_seed for m in spec.members],
            [m.task for m in spec.members],
            data,
            spec.epochs - begin,
        )
        full = dataclasses.replace(honest.history)
        for name in ("train_loss", "val_loss", "val_accuracy"):
            getattr(full, name)[:, begin:] = getattr(history, name)
        return dataclasses.replace(honest, state=state, history=full)

    @staticmethod
    def _lazy(honest: WorkUnitResult) -> WorkUnitResult:
        """Every claimed state holds the start weights and moments under the honest counters."""
        start = honest.boundaries[0]

        def unchanged(claimed: PopulationState) -> PopulationState:
            return dataclasses.replace(
                claimed.cpu_copy(),
                params=start.params.clone(),
                exp_avg=start.exp_avg.clone(),
                exp_avg_sq=start.exp_avg_sq.clone(),
            )

        return dataclasses.replace(
            honest,
            state=unchanged(honest.state),
            boundaries=(start, *(unchanged(b) for b in honest.boundaries[1:])),
        )


class SwappingWorker(Worker):
    """Uploads each result under the next unit's id: another unit's result for its own lease."""

    def _upload_pending(self) -> None:
        pending = self.folder.pending_results()
        if len(pending) > 1:
            blobs = [p.read_bytes() for p in pending]
            for path, blob in zip(pending, blobs[1:] + blobs[:1], strict=True):
                path.write_bytes(blob)
        super()._upload_pending()


def main() -> None:
    server, workdir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    folder = WorkerFolder(workdir)
    runtime = CheatingRuntime(mode, checkpoint_dir=folder.checkpoints)
    kind = SwappingWorker if mode == "swap" else Worker
    client = ServerClient(server, patience_s=30)
    stay = sys.argv[4:] == ["stay"]
    worker = kind(client, runtime, folder, exit_when_idle=not stay, name=f"cheat-{mode}")
    worker.run()


if __name__ == "__main__":
    main()
