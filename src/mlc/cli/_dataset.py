"""`mlc dataset info|verify|export`: look at, check and release a dataset directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlc.cli._app import console, counted, dataset_app, err_console, path_value
from mlc.errors import ConfigError

__all__ = ["export", "info", "verify"]


@dataset_app.command(short_help="What a dataset holds.")
def info(path: Annotated[Path, typer.Argument(parser=path_value, help="dataset directory")]) -> None:
    """What a dataset holds: tasks, networks, convergence, epochs, devices."""
    import mlc.dataset

    ds = mlc.dataset.open(path)
    m, nets = ds.manifest, ds.networks
    header = (
        f"{m['name']} (preset {m['preset']}, spec {m['spec_version']}), model {m['model']} "
        f"[{', '.join(ds.layouts)}], {len(nets)} networks"
    )
    console.print(escape(header), style="bold")  # the layout id's brackets are not markup
    table = Table()
    for col in ("task", "networks", "converged", "mean epochs", "median val loss", "devices"):
        left = col in ("task", "devices")
        table.add_column(col, justify="left" if left else "right", no_wrap=col == "task")
    for task in ds.tasks:
        rows = nets[nets["task"] == task]
        table.add_row(
            task,
            str(len(rows)),
            f"{int(rows['converged'].sum())}",
            f"{rows['epochs'].mean():.1f}" if len(rows) else "-",
            f"{rows['final_val_loss'].median():.4f}" if len(rows) else "-",
            ", ".join(sorted(set(rows["device_kind"]))),
        )
    console.print(table)
    console.print(
        f"data: seed {m['data']['seed']}, {m['data']['n_train']} train / {m['data']['n_val']} "
        f"validation sequences of {m['data']['length']} steps"
    )
    subsets = ds.config.get("subsets") or []
    if subsets and "subset" not in m:  # a release is itself one milestone
        fewest = min((int((nets["task"] == t).sum()) for t in ds.tasks), default=0)
        said = ", ".join(f"{n} {'ready' if n <= fewest else 'not yet'}" for n in subsets)
        console.print(f"milestones (first N per task, `mlc dataset export --per-task N`): {said}")


@dataset_app.command(short_help="Check a dataset end to end; exit 1 on problems.")
def verify(path: Annotated[Path, typer.Argument(parser=path_value, help="dataset directory")]) -> None:
    """Check every file hash, the weights against the table, and the histories; exit 1 on problems."""
    import mlc.dataset

    report = mlc.dataset.verify(path)
    if report.ok:
        console.print(f"OK: {report.n_networks} networks, {report.n_files_checked} files checked")
        return
    for problem in report.problems:
        err_console.print(f"problem: {escape(problem)}")
    err_console.print(f"FAILED: {counted(len(report.problems), 'problem')} in {path}")
    raise typer.Exit(1)


@dataset_app.command(short_help="Write a release of N networks per task, or a Hugging Face folder.")
def export(
    path: Annotated[Path, typer.Argument(parser=path_value, help="dataset directory")],
    out: Annotated[Path, typer.Option(parser=path_value, help="folder to write the release into")],
    per_task: Annotated[
        int | None, typer.Option(min=1, help="networks per task (mlc: required; hf: all if left out)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="release name [e.g. MLDS-DS1-100]")] = None,
    allow_short: Annotated[bool, typer.Option(help="allow tasks with fewer networks")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="mlc (a release and its archive) or hf (Parquet + a card)")
    ] = "mlc",
) -> None:
    """Write a release: a directory of the first N networks per task, its .tar.xz and .sha256; or,
    with --format hf, a folder `datasets.load_dataset("parquet", data_dir=OUT)` reads."""
    import mlc.dataset

    if fmt == "hf":
        console.print(f"hf dataset {mlc.dataset.export_hf(path, out, per_task=per_task)}")
        return
    if fmt != "mlc":
        raise ConfigError(f"--format must be mlc or hf, not {fmt!r}")
    if per_task is None:
        raise ConfigError("--per-task is required for a release (--format mlc)")
    result = mlc.dataset.export(path, out, per_task=per_task, name=name, allow_short=allow_short)
    console.print(f"release {result.directory}\narchive {result.archive}\nsha256  {result.sha256}")
