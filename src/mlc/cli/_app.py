"""The `mlc` command line: one Typer app; each command is a thin layer over the library.

Library errors (`MLCError`) are printed as one line naming the problem and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import typer
from rich.console import Console

from mlc.errors import ConfigError

__all__ = [
    "app",
    "console",
    "counted",
    "emit_json",
    "err_console",
    "missing_extra",
    "path_value",
    "require_extra",
]

app = typer.Typer(
    name="mlc",
    help="MLC: train, validate, keep and analyse large populations of small neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from mlc import __version__

        print(f"mlc {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """MLC: train, validate, keep and analyse large populations of small neural networks."""


dataset_app = typer.Typer(help="Inspect, verify and export datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

console = Console()
err_console = Console(stderr=True)


def path_value(text: str | Path) -> Path:
    """A path given on the command line (or an option's default, which Typer passes through too).
    An empty one is refused: `Path("")` is the current folder, so `--workdir "$UNSET"` would have
    filled it with a database and a dataset."""
    if isinstance(text, str) and not text.strip():
        raise typer.BadParameter("is empty; to mean the current folder, pass '.'")
    return Path(text)


def counted(n: int, noun: str) -> str:
    """ "1 task", "3 tasks": a smoke run's single networks read "1 networks" otherwise."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def emit_json(event: str, **fields: object) -> None:
    """One JSON object on one line of stdout (`--log-format json`): written as is, never wrapped or
    styled by rich."""
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    console.file.write(json.dumps({"time": stamp, "event": event, **fields}) + "\n")
    console.file.flush()


# The modules each install extra brings (pyproject.toml), looked up without importing them.
_EXTRAS = {
    "analysis": ("sklearn", "matplotlib", "umap"),
    "server": ("fastapi", "fastapi_offline", "uvicorn", "pydantic_settings", "jinja2"),
    "postgres": ("psycopg",),
    "ray": ("ray",),
}


def missing_extra(extra: str) -> str | None:
    """The first module of install extra `extra` that is not installed, or None."""
    return next((m for m in _EXTRAS[extra] if importlib.util.find_spec(m) is None), None)


def require_extra(extra: str, what: str) -> None:
    """Refuse `what` in one line naming the pip command, where its extra is not installed (the base
    install trains and stores; analysis, the server, PostgreSQL and Ray are extras)."""
    module = missing_extra(extra)
    if module is not None:
        raise ConfigError(
            f"{what} needs the {extra} extra ({module} is not installed): pip install 'mlc[{extra}]'"
        )
