"""What anyone may read: the experiments with their progress, and the server's status."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mlc import coordinator
from mlc.protocol import ExperimentInfo, ServerStatus, TaskProgress

__all__ = ["experiment_infos", "router"]

router = APIRouter(tags=["public"])


def experiment_infos(engine: object) -> list[ExperimentInfo]:
    return [
        ExperimentInfo(
            name=e.name,
            state=e.state,
            queue=e.queue,
            preset=e.preset,
            n_networks=sum(t.finished + t.training + t.failed for t in e.tasks),
            finished=e.total("finished"),
            converged=e.total("converged"),
            training=e.total("training"),
            failed=e.total("failed"),
            tasks=[TaskProgress(**vars(t)) for t in e.tasks],
            dataset_dir=str(e.dataset_dir),
        )
        for e in coordinator.experiment_overviews(engine)  # type: ignore[arg-type]
    ]


@router.get("/experiments", response_model=list[ExperimentInfo])
def experiments(request: Request) -> list[ExperimentInfo]:
    """Every experiment: state, networks finished, training and failed per task, dataset folder."""
    return experiment_infos(request.app.state.engine)


@router.get("/status", response_model=ServerStatus)
def server_status(request: Request) -> ServerStatus:
    """Work units by state, uploads by verdict, hosts active in the last hour, daemon heartbeats."""
    return ServerStatus(**coordinator.server_overview(request.app.state.engine))
