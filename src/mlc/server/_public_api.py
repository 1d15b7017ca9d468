"""What anyone may read (the experiments with their progress, the server's status, the project's
pages as JSON: overview, one experiment, one host, one volunteer) and the one thing anyone may do:
make a volunteer account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mlc import coordinator
from mlc.coordinator import ExperimentDetail, FrontPage, HostDetail, VolunteerDetail
from mlc.protocol import (
    AccountRequest,
    AccountResponse,
    ExperimentInfo,
    Problem,
    ServerStatus,
    TaskProgress,
)

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


@router.get("/overview", response_model=FrontPage)
def overview(request: Request) -> FrontPage:
    """The front page's numbers: volunteers and hosts (all, and active in the last day), units ready,
    in progress, waiting for validation and done today, each experiment's progress with its dataset
    milestones and per-task cells, the credit leaders, and the daemons' health."""
    return coordinator.front_page(request.app.state.engine)


_NOT_FOUND = {404: {"model": Problem, "description": "no such experiment, host or volunteer"}}


@router.get("/experiments/{name}", response_model=ExperimentDetail, responses=_NOT_FOUND)
def experiment(name: str, request: Request) -> ExperimentDetail:
    """One experiment: progress per task, convergence rate and epochs, validation rejections by
    reason, the final validation losses of its finished networks, and where its dataset is."""
    return coordinator.experiment_detail(request.app.state.engine, name)


@router.get("/hosts/{host_id}", response_model=HostDetail, responses=_NOT_FOUND)
def host(host_id: int, request: Request) -> HostDetail:
    """One host: what it is, its credit and recent average, units done, validity rate, trust state."""
    return coordinator.host_detail(request.app.state.engine, host_id)


@router.get("/volunteers/{account_id}", response_model=VolunteerDetail, responses=_NOT_FOUND)
def volunteer(account_id: int, request: Request) -> VolunteerDetail:
    """One volunteer: credit and recent average, units done, validity rate, their hosts and trust."""
    return coordinator.volunteer_detail(request.app.state.engine, account_id)


@router.post(
    "/accounts",
    response_model=AccountResponse,
    status_code=201,
    responses={
        400: {"model": Problem, "description": "no name, or no email address"},
        409: {"model": Problem, "description": "an account with this email exists"},
    },
)
def create_account(body: AccountRequest, request: Request) -> AccountResponse:
    """Make a volunteer account; the key in the answer is shown once (the server keeps its hash).
    Run workers with `mlc worker --account-key KEY` to have their credit count for it."""
    account, key = coordinator.create_account(request.app.state.engine, body.name, body.email)
    return AccountResponse(account_id=account.id, account_key=key)
