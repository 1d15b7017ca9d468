"""`mlc server` and `mlc admin`: run the volunteer server, and manage its experiments and hosts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlc.cli._app import app, console, path_value, require_extra
from mlc.errors import ConfigError

__all__ = ["admin_app", "server"]

admin_app = typer.Typer(help="Manage a server's experiments and look at its hosts.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@app.command(short_help="Run the volunteer server (API and daemons).")
def server(
    workdir: Annotated[Path, typer.Option(parser=path_value, help="the server's folder")],
    db: Annotated[str | None, typer.Option(help="database URL (default: SQLite in the workdir)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    role: Annotated[str, typer.Option(help="all, api, transitioner, validator or assimilator")] = "all",
) -> None:
    """Run the server: the HTTP API for workers and admins, and the transitioner, validator and
    assimilator daemons (in this process with --role all, or one role per process). The admin token
    is made at the first start in WORKDIR/admin.token."""
    require_extra("server", "mlc server")
    if db is not None and db.startswith("postgresql"):
        require_extra("postgres", "a PostgreSQL --db")
    from mlc.server import ROLES, ServerSettings, serve

    if role not in ROLES:
        raise ConfigError(f"unknown --role {role!r}; use one of {', '.join(ROLES)}")
    settings = ServerSettings(workdir=workdir, db_url=db, host=host, port=port, role=role)  # type: ignore[arg-type]
    console.print(f"mlc server ({role}) on http://{host}:{port}, workdir {escape(str(workdir))}")
    serve(settings)


def _client(server: str, token_file: Path | None):  # -> httpx.Client
    import httpx

    from mlc.protocol import API_PREFIX

    token = os.environ.get("MLC_ADMIN_TOKEN")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --token-file {token_file}: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(
            "the admin token is needed: --token-file SERVER_WORKDIR/admin.token, or MLC_ADMIN_TOKEN"
        )
    return httpx.Client(
        base_url=server.rstrip("/") + API_PREFIX, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


def _call(server: str, token_file: Path | None, method: str, path: str, **kwargs: object) -> object:
    import httpx

    try:
        with _client(server, token_file) as client:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as exc:
        raise ConfigError(f"cannot reach the server at {server}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise ConfigError(f"the server refused ({response.status_code}): {detail}")
    return response.json()


ServerOption = Annotated[str, typer.Option("--server", help="the server's URL, e.g. http://127.0.0.1:8000")]
TokenOption = Annotated[
    Path | None, typer.Option(parser=path_value, help="file holding the admin token (else MLC_ADMIN_TOKEN)")
]


@admin_app.command(short_help="Add an experiment from a preset.")
def submit(
    preset: Annotated[str, typer.Argument(help="a shipped preset name or a preset TOML file")],
    server: ServerOption,
    token_file: TokenOption = None,
    networks_per_task: Annotated[int | None, typer.Option(min=1)] = None,
    max_epochs: Annotated[int | None, typer.Option(min=1)] = None,
    queue: Annotated[str, typer.Option(help="cpu, gpu or test")] = "cpu",
) -> None:
    """Add an experiment to the server (the preset's text is sent: presets are data, never code)."""
    from mlc.work import preset_text

    body = {
        "preset_toml": preset_text(preset),
        "networks_per_task": networks_per_task,
        "max_epochs": max_epochs,
        "queue": queue,
    }
    info = _call(server, token_file, "POST", "/admin/experiments", json=body)
    _print_experiments([info])


@admin_app.command(short_help="Stop handing out an experiment's work.")
def pause(name: str, server: ServerOption, token_file: TokenOption = None) -> None:
    """Pause experiment NAME: nothing more is handed out; leases in flight finish."""
    _print_experiments([_call(server, token_file, "POST", f"/admin/experiments/{name}/pause")])


@admin_app.command(short_help="Hand out a paused experiment's work again.")
def resume(name: str, server: ServerOption, token_file: TokenOption = None) -> None:
    """Resume experiment NAME."""
    _print_experiments([_call(server, token_file, "POST", f"/admin/experiments/{name}/resume")])


@admin_app.command(short_help="End an experiment for good.")
def cancel(name: str, server: ServerOption, token_file: TokenOption = None) -> None:
    """Cancel experiment NAME: nothing more is handed out, ever; what was assimilated stays."""
    _print_experiments([_call(server, token_file, "POST", f"/admin/experiments/{name}/cancel")])


@admin_app.command(short_help="Mark a host untrusted and take back what it made.")
def distrust(
    host_id: int,
    server: ServerOption,
    reason: Annotated[str, typer.Option(help="why (kept with every result it voids)")],
    token_file: TokenOption = None,
) -> None:
    """Mark host HOST_ID untrusted: it gets no more work, its results not yet built on are voided, and
    its assimilated results that no full replay or replica confirmed are withdrawn (their networks
    leave the dataset and are trained again from their seeds)."""
    answer = _call(server, token_file, "POST", f"/admin/hosts/{host_id}/distrust", json={"reason": reason})
    console.print(
        f"host {host_id} is {answer['host']['trust']}; {answer['units_reissued']} units voided or withdrawn "
        "and queued again"
    )


@admin_app.command(short_help="The server's experiments.")
def experiments(server: ServerOption, token_file: TokenOption = None) -> None:
    """Every experiment with its state and progress."""
    _print_experiments(_call(server, token_file, "GET", "/experiments"))  # type: ignore[arg-type]


@admin_app.command(short_help="The hosts registered with the server.")
def hosts(server: ServerOption, token_file: TokenOption = None, as_json: bool = False) -> None:
    """Every registered host: device, cores, last seen, units leased, trust."""
    rows = _call(server, token_file, "GET", "/admin/hosts")
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table()
    for col in ("id", "name", "device", "cpus", "last seen (UTC)", "units leased", "trust"):
        table.add_column(col)
    for h in rows:  # type: ignore[attr-defined]
        d = h["description"]
        table.add_row(
            str(h["host_id"]),
            h["name"],
            d["device"],
            str(d["cpus"]),
            h["last_seen_at"][:19],
            str(h["units_leased"]),
            h["trust"],
        )
    console.print(table)


def _print_experiments(infos: list) -> None:  # type: ignore[type-arg]
    table = Table()
    for col in ("name", "state", "queue", "finished", "training", "failed", "dataset"):
        table.add_column(col)
    for e in infos:
        table.add_row(
            e["name"],
            e["state"],
            e["queue"],
            f"{e['finished']}/{e['n_networks']}",
            str(e["training"]),
            str(e["failed"]),
            escape(e["dataset_dir"]),
        )
    console.print(table)
