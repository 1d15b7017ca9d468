"""The calls a volunteer host makes: register, lease work, extend its leases, upload results, and
look at its uploads' verdicts. Every call but registration needs the host's token."""

from __future__ import annotations

import base64
import hashlib

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from mlc import coordinator
from mlc.errors import ResultRejected
from mlc.protocol import (
    ExtendRequest,
    ExtendResponse,
    LeasedUnit,
    LeaseRequest,
    LeaseResponse,
    LinkRequest,
    LinkResponse,
    Problem,
    RegisterRequest,
    RegisterResponse,
    ResultInfo,
    UploadResponse,
)
from mlc.server._auth import bearer_token
from mlc.work import precheck_result

__all__ = ["router"]

router = APIRouter(tags=["hosts"])
_UNKNOWN_KEY = "unknown account key: make an account with POST /api/v1/accounts"
_ERRORS = {
    401: {"model": Problem, "description": "no token, or an unknown one"},
    403: {"model": Problem, "description": "not this host's to ask for"},
}


def _host(request: Request, description: dict | None = None) -> coordinator.Host:
    host = coordinator.authenticate_host(request.app.state.engine, bearer_token(request), description)
    if host is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown host token: register again (mlc worker does)"
        )
    if host.trust == "untrusted":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this host's results failed validation (they were not trained as their work units say); "
            "it gets no more work",
        )
    return host


def _queues(host: coordinator.Host) -> tuple[str, ...]:
    """A GPU host takes the GPU queue and the CPU one; a CPU host the CPU queue; test hosts the test
    queue besides (new kernels and versions go there first)."""
    queues = ("gpu", "cpu") if host.description.get("device") == "cuda" else ("cpu",)
    return (*queues, "test") if host.test_queue else queues


@router.post("/hosts", response_model=RegisterResponse, status_code=201)
def register(body: RegisterRequest, request: Request) -> RegisterResponse:
    """Register a host; the token in the answer is shown once (the server keeps its hash). With an
    `account_key` the host is linked to that volunteer's account (an unknown key registers nothing)."""
    engine = request.app.state.engine
    account = None
    if body.account_key is not None:
        account = coordinator.account_by_key(engine, body.account_key)
        if account is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, _UNKNOWN_KEY)
    host, token = coordinator.register_host(
        engine, body.name, body.description.model_dump(), body.test_queue, account and account.id
    )
    return RegisterResponse(host_id=host.id, token=token)


@router.put(
    "/hosts/me/account",
    response_model=LinkResponse,
    responses={**_ERRORS, 404: {"model": Problem, "description": "no account has this key"}},
)
def link_account(body: LinkRequest, request: Request) -> LinkResponse:
    """Link this host to the account whose key is given (or move it to another): its credit from now
    on counts for that volunteer."""
    host = _host(request)
    account = coordinator.account_by_key(request.app.state.engine, body.account_key)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, _UNKNOWN_KEY)
    coordinator.link_host(request.app.state.engine, host.id, body.account_key)
    return LinkResponse(host_id=host.id, account_id=account.id, account_name=account.name)


@router.post("/work/lease", response_model=LeaseResponse, responses=_ERRORS)
def lease(body: LeaseRequest, request: Request) -> LeaseResponse:
    """Lease ready units holding up to `max_networks` networks, with a deadline to extend."""
    settings = request.app.state.settings
    host = _host(request, body.description.model_dump() if body.description else None)
    queues = _queues(host)
    units = request.app.state.service.lease(
        host.owner,
        min(body.max_networks, settings.max_lease_networks),
        settings.lease_seconds,
        queues=queues,
        kernel_class=host.kernel_class,
    )
    leased = [
        LeasedUnit(
            wu_id=u.spec.wu_id,
            spec_json=u.spec.to_json(),
            state_b64=base64.b64encode(u.state).decode() if u.state is not None else None,
        )
        for u in units
    ]
    finished = not leased and not coordinator.work_remaining(request.app.state.engine, queues)
    return LeaseResponse(
        units=leased,
        lease_seconds=settings.lease_seconds,
        retry_after_s=settings.retry_after_s,
        finished=finished,
    )


@router.post("/work/extend", response_model=ExtendResponse, responses=_ERRORS)
def extend(body: ExtendRequest, request: Request) -> ExtendResponse:
    """Push this host's leases on `wu_ids` out by the lease time; answers the ones it still holds."""
    host = _host(request)
    seconds = request.app.state.settings.lease_seconds
    return ExtendResponse(
        held=request.app.state.service.extend(host.owner, body.wu_ids, seconds), lease_seconds=seconds
    )


@router.put(
    "/results/{wu_id}",
    response_model=UploadResponse,
    responses={
        **_ERRORS,
        404: {"model": Problem, "description": "no such work unit"},
        411: {"model": Problem, "description": "no Content-Length"},
        413: {"model": Problem, "description": "larger than the server takes"},
        422: {"model": Problem, "description": "not a well-formed result for this unit"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(wu_id: str, request: Request) -> UploadResponse:
    """Upload a unit's result: safetensors bytes (`WorkUnitResult.to_bytes`). The same bytes again
    are answered `duplicate` and change nothing; a result for a unit already done is `too_late`."""
    state = request.app.state
    host = await run_in_threadpool(_host, request)
    body = await _read_body(request, state.settings.max_upload_bytes)
    found = await run_in_threadpool(coordinator.unit_for_upload, state.engine, wu_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no work unit {wu_id!r}")
    if not await run_in_threadpool(coordinator.was_leased_to, state.engine, wu_id, host.owner):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"work unit {wu_id} was not leased to this host")
    spec, n_params = found
    try:
        precheck_result(body, spec, n_params)
    except ResultRejected as exc:
        if exc.reason in ("wrong_unit", "members"):  # another unit's result for this lease: no accident
            await run_in_threadpool(coordinator.distrust_reporter, state.engine, host.owner, str(exc))
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"result refused: {exc}") from None
    outcome = await run_in_threadpool(state.service.report, wu_id, body, host.owner)
    return UploadResponse(wu_id=wu_id, sha256=hashlib.sha256(body).hexdigest(), outcome=outcome.value)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused by its declared length before any of it is read, and again should it run
    past the limit while streaming (a client that lies about its length)."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "send the result with a Content-Length")
    if not declared.isdigit() or int(declared) > limit:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"a result may be at most {limit:,} bytes, not {declared}",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"a result may be at most {limit:,} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/results/{wu_id}", response_model=list[ResultInfo], responses=_ERRORS)
def result_verdicts(wu_id: str, request: Request) -> list[ResultInfo]:
    """This host's uploads for `wu_id` with the validator's verdicts (pending until judged)."""
    host = _host(request)
    return [
        ResultInfo(wu_id=wu_id, sha256=sha, verdict=verdict, reason=reason)
        for sha, verdict, reason in coordinator.results_of(request.app.state.engine, wu_id, host.owner)
    ]
