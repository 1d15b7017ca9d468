"""The FastAPI application factory: routes, error translation, offline docs.

`create_app(settings, engine)` builds everything from its arguments (no import-time globals, no
environment): tests make as many apps as they like, each on its own database.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

import mlc
from mlc.coordinator import CoordinatorService
from mlc.errors import ConfigError, MLCError, ResultRejected, StateError, StoreBusy, UnknownNameError
from mlc.protocol import API_PREFIX
from mlc.server import _admin_api, _hosts_api, _pages, _public_api
from mlc.server._auth import load_or_make_admin_token
from mlc.server._settings import ServerSettings

__all__ = ["create_app"]

# an mlc error's branch -> its HTTP status: what the client did wrong, or a retry later
_STATUS = [
    (StoreBusy, 503),
    (UnknownNameError, 404),
    (ResultRejected, 422),
    (StateError, 409),
    (ConfigError, 400),
    (MLCError, 400),
]


def create_app(
    settings: ServerSettings, engine: Engine, service: CoordinatorService | None = None
) -> FastAPI:
    """The server's API over `engine`, with `service` (made on `engine` if None) for leases and
    uploads. Docs at /docs and /redoc are served from the package, so they work offline, and so
    are the project's pages (/, /experiments/NAME, /hosts/ID, /volunteers/ID)."""
    app = FastAPIOffline(
        title="MLC server",
        version=mlc.__version__,
        description="Work units for volunteer hosts, their results, and the experiments' progress.",
        favicon_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.service = service or CoordinatorService(engine, replication=settings.replication)
    app.state.admin_token = load_or_make_admin_token(settings.admin_token_file)
    for router in (_hosts_api.router, _public_api.router, _admin_api.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(_pages.router)
    app.add_exception_handler(MLCError, _mlc_error)
    return app


async def _mlc_error(request: Request, exc: Exception) -> JSONResponse:
    code = next(status for kind, status in _STATUS if isinstance(exc, kind))
    headers = {"Retry-After": "5"} if code == 503 else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)
