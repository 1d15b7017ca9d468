"""The `mlc` console script."""

from __future__ import annotations

import sys

from rich.markup import escape

from mlc._storage import storage_error
from mlc.cli import _analyze, _dataset, _run, _server, _worker  # noqa: F401  (registers the commands)
from mlc.cli._app import app, err_console
from mlc.errors import MLCError

__all__ = ["app", "main"]

_INTERRUPTED = (  # the bar counted epochs in memory; a resume keeps those of finished work units
    "interrupted: re-run the same command to resume; networks still training go back to the end "
    "of their last finished work unit"
)


def main() -> None:
    """Run the CLI. Typer reports bad arguments itself (exit 2); library errors become one clear line
    (exit 2); an interrupt says how to resume."""
    try:
        app()
    except MLCError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except OSError as exc:  # a full disk or read-only folder met where no layer translated it
        translated = storage_error(exc, exc.filename or "a file")
        if translated is None:
            raise
        err_console.print(f"[red]error:[/] {escape(str(translated))}")
        sys.exit(2)
    except KeyboardInterrupt:  # outside a command (Typer handles those below)
        err_console.print(_INTERRUPTED)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:  # Typer turns Ctrl-C in a command into exit status 130, silently
            err_console.print(_INTERRUPTED)
        raise
