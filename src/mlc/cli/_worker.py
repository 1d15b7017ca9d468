"""`mlc worker`: train work units for a volunteer server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from mlc.cli._app import app, path_value

__all__ = ["worker"]


@app.command(short_help="Train work units for a server.")
def worker(
    server: Annotated[str, typer.Option("--server", help="the server's URL, e.g. http://127.0.0.1:8000")],
    workdir: Annotated[
        Path, typer.Option(parser=path_value, help="the worker's folder: token, results, checkpoints")
    ] = Path("mlc-worker"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads that train [all cores]")] = None,
    exit_when_idle: Annotated[bool, typer.Option(help="exit once the server has no work left")] = False,
    name: Annotated[str | None, typer.Option(help="the host name the server shows [this host's]")] = None,
    test_queue: Annotated[bool, typer.Option(help="also take the server's test queue")] = False,
    account_key: Annotated[
        str | None,
        typer.Option(
            envvar="MLC_ACCOUNT_KEY",
            help="your volunteer account's key (POST /api/v1/accounts): this host's credit counts for it",
        ),
    ] = None,
    checkpoint_seconds: Annotated[
        float, typer.Option(min=0, help="save the training state at most this often (what a kill can lose)")
    ] = 15.0,
) -> None:
    """Register with the server (once; the token is kept in WORKDIR, mode 0600), then lease work units
    sized to this device, train them, and upload the results, retrying while the server is away.
    A killed worker resumes its batch from its last checkpoint when started again."""
    from mlc.work import WorkerRuntime
    from mlc.worker import ServerClient, Worker, WorkerFolder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    folder = WorkerFolder(workdir)
    runtime = WorkerRuntime(
        device, threads=threads, checkpoint_dir=folder.checkpoints, checkpoint_seconds=checkpoint_seconds
    )
    client = ServerClient(server)
    try:
        summary = Worker(
            client,
            runtime,
            folder,
            exit_when_idle=exit_when_idle,
            name=name,
            test_queue=test_queue,
            account_key=account_key,
        ).run()
    finally:
        client.close()
    logging.getLogger("mlc.worker").info(
        "done: %d unit(s) trained, %d result(s) uploaded, %d refused",
        summary.units_trained,
        summary.results_uploaded,
        summary.results_refused,
    )
