"""The admin's calls (`mlc admin`): submit an experiment, pause, resume or cancel one, list hosts,
distrust one. Each needs the admin token from `DIR/admin.token`."""

from __future__ import annotations

import tomllib

from fastapi import APIRouter, Depends, HTTPException, Request, status

from mlc import coordinator
from mlc.errors import ConfigError
from mlc.protocol import (
    DistrustRequest,
    DistrustResponse,
    ExperimentInfo,
    HostDescription,
    HostInfo,
    Problem,
    SubmitRequest,
)
from mlc.server._auth import require_admin
from mlc.server._public_api import experiment_infos

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
_ERRORS = {401: {"model": Problem, "description": "no admin token, or a wrong one"}}


def _info(request: Request, name: str) -> ExperimentInfo:
    return next(e for e in experiment_infos(request.app.state.engine) if e.name == name)


@router.post("/experiments", response_model=ExperimentInfo, status_code=201, responses=_ERRORS)
def submit(body: SubmitRequest, request: Request) -> ExperimentInfo:
    """Add an experiment from a preset's TOML text (data, never code), with its dataset under the
    server's `datasets/`. Submitting the same preset and settings again is a no-op; other settings
    under an existing name are refused."""
    from mlc.work import preset_from_text

    engine, settings = request.app.state.engine, request.app.state.settings
    overrides: dict[str, object] = {}
    if body.networks_per_task is not None:
        overrides["networks_per_task"] = body.networks_per_task
    if body.max_epochs is not None:
        overrides["train.max_epochs"] = body.max_epochs
    if "replay_segments" not in _parsed(body.preset_toml):
        overrides["replay_segments"] = settings.replay_segments
    config = preset_from_text(body.preset_toml, overrides, source="submitted")
    exp, _created = coordinator.create_experiment(engine, config, settings.datasets_dir / config.name)
    coordinator.set_experiment_queue(engine, exp.name, body.queue)
    return _info(request, exp.name)


def _parsed(text: str) -> dict[str, object]:
    """The submitted preset's table, refused where it is a [random_automata] preset still to be
    resolved: its learnability check trains reference networks for minutes to hours, not something
    an API request may start."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the submitted preset is not valid TOML: {exc}") from None
    table = raw.get("random_automata")
    if isinstance(table, dict) and "selection" not in table and "tasks" not in raw:
        raise ConfigError(
            "a [random_automata] preset chooses its automata by a learnability check that trains for "
            "minutes to hours; the server does not run it: submit a preset that lists its tasks"
        )
    return raw


@router.post("/experiments/{name}/{action}", response_model=ExperimentInfo, responses=_ERRORS)
def change_state(name: str, action: str, request: Request) -> ExperimentInfo:
    """`pause` (nothing more handed out), `resume`, or `cancel` (for good; what was assimilated stays)."""
    states = {
        "pause": coordinator.ExperimentState.PAUSED,
        "resume": coordinator.ExperimentState.RUNNING,
        "cancel": coordinator.ExperimentState.CANCELLED,
    }
    if action not in states:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {action!r}; use pause, resume or cancel")
    coordinator.set_experiment_state(request.app.state.engine, name, states[action])
    return _info(request, name)


@router.get("/hosts", response_model=list[HostInfo], responses=_ERRORS)
def hosts(request: Request) -> list[HostInfo]:
    """Every registered host: what it says it has, when it was last seen, units leased to it."""
    return [_host_info(h) for h in coordinator.list_hosts(request.app.state.engine)]


@router.post(
    "/hosts/{host_id}/distrust",
    response_model=DistrustResponse,
    responses={**_ERRORS, 404: {"model": Problem, "description": "no such host"}},
)
def distrust(host_id: int, body: DistrustRequest, request: Request) -> DistrustResponse:
    """Mark a host untrusted, as the validator does when it catches one (for what the admin learnt
    otherwise): it gets no more work, its results not yet built on are voided, and its assimilated
    results that no full replay or replica confirmed are withdrawn with what was built on them (their
    networks leave the dataset and are trained again). Distrusting it again changes nothing."""
    engine = request.app.state.engine
    if not any(h.id == host_id for h in coordinator.list_hosts(engine)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id}")
    units = coordinator.distrust_reporter(engine, coordinator.host_owner(host_id), f"admin: {body.reason}")
    (host,) = [h for h in coordinator.list_hosts(engine) if h.id == host_id]
    return DistrustResponse(host=_host_info(host), units_reissued=units)


def _host_info(h: coordinator.Host) -> HostInfo:
    return HostInfo(
        host_id=h.id,
        name=h.name,
        created_at=h.created_at.isoformat() + "Z",
        last_seen_at=h.last_seen_at.isoformat() + "Z",
        description=HostDescription(**h.description),
        test_queue=h.test_queue,
        units_leased=h.units_leased,
        trust=h.trust,
    )
