"""Running the server: the API under uvicorn and the daemons, in one process or one role each.

`role="all"` runs the API and the three daemons (as threads) in this process: the simple default. For
a busy server each runs as its own process (`--role api|transitioner|validator|assimilator`) on one
database, so a validator re-evaluating networks never slows the API's answers; every daemon pass is
one transaction per unit, so any of them may be stopped and started at any moment.
"""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

from mlc.coordinator import DAEMONS, CoordinatorService, connect
from mlc.server._app import create_app
from mlc.server._settings import ServerSettings

__all__ = ["serve"]

_log = logging.getLogger("mlc.server")


def serve(settings: ServerSettings) -> None:
    """Run `settings.role` until SIGINT or SIGTERM."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    engine = connect(settings.database_url)
    service = CoordinatorService(engine, replication=settings.replication)
    stop = threading.Event()
    daemons = {"all": DAEMONS, "api": ()}.get(settings.role, (settings.role,))
    threads = [
        threading.Thread(
            target=service.run_daemon,
            args=(name, stop),
            kwargs={"interval_s": settings.daemon_interval_s},
            name=f"mlc-{name}",
            daemon=True,
        )
        for name in daemons
    ]
    for thread in threads:
        thread.start()
    try:
        if settings.role in ("all", "api"):
            app = create_app(settings, engine, service)
            config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning")
            uvicorn.Server(config).run()  # returns on SIGINT/SIGTERM
        else:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        engine.dispose()
