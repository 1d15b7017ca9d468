"""`mlc run`, `mlc status` and `mlc presets`: train an experiment locally and watch it."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlc.cli._app import app, console, counted, emit_json, err_console, missing_extra, path_value
from mlc.cli._progress import LOG_FORMATS, make_progress

if TYPE_CHECKING:
    from mlc.executors import RunSummary
    from mlc.work import ExperimentConfig

__all__ = ["presets", "run", "status"]


def _default_workdir(preset: str) -> Path:
    return Path("runs") / Path(preset).stem


class ExecutorName(StrEnum):
    LOCAL = "local"
    RAY = "ray"


@app.command(short_help="Train a preset here; re-running resumes.")
def run(
    preset: Annotated[str, typer.Argument(help="preset name (see `mlc presets`) or a .toml file")],
    networks_per_task: Annotated[int | None, typer.Option(min=1, help="override the preset")] = None,
    max_epochs: Annotated[int | None, typer.Option(min=1, help="override the preset")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    workdir: Annotated[
        Path | None, typer.Option(parser=path_value, help="database and dataset go here [runs/PRESET]")
    ] = None,
    population_size: Annotated[
        int | None, typer.Option(min=1, help="networks per batch [from memory]")
    ] = None,
    analyze: Annotated[bool, typer.Option(help="write the weight-space analysis report at the end")] = True,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="CPU threads that train, a range of networks each (ray: per task, 1) [all cores]"
        ),
    ] = None,
    executor: Annotated[
        ExecutorName, typer.Option(help="local: in this process; ray: in Ray tasks on a cluster")
    ] = ExecutorName.LOCAL,
    ray_address: Annotated[
        str | None,
        typer.Option(help="with --executor ray: auto or HEAD_HOST:PORT of a running cluster [a local Ray]"),
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="auto (rich on a terminal, else text), rich, text or json (one object a line)")
    ] = "auto",
    log_interval: Annotated[
        float, typer.Option(min=0, help="seconds between text or json progress lines")
    ] = 10.0,
) -> None:
    """Train PRESET through the full pipeline (on this machine, or on a Ray cluster); re-running
    resumes.

    With a larger --networks-per-task than an earlier run in the same workdir, the experiment grows:
    its networks stay and the new ones are trained."""
    if log_format not in LOG_FORMATS:
        raise typer.BadParameter(
            f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}", param_hint="--log-format"
        )

    from mlc import work
    from mlc._host import usable_cpus
    from mlc._storage import writable_dir
    from mlc.errors import ConfigError
    from mlc.train import SelectionProgress, keep_freed_memory
    from mlc.work import load_preset, resolve_device

    if executor is ExecutorName.RAY:
        # made first: a missing Ray or a bad device says so before the preset is resolved
        from mlc.executors import RayExecutor

        trainer = RayExecutor(
            workdir or _default_workdir(preset), device, population_size, None, threads, ray_address
        )
        device = "auto"  # the driver's own, for what resolving a preset trains (DS3's learnability check)
    elif ray_address is not None:
        raise ConfigError("--ray-address is for --executor ray")
    as_json = log_format == "json"
    overrides: dict[str, object] = {}
    if networks_per_task is not None:
        overrides["networks_per_task"] = networks_per_task
    if max_epochs is not None:
        overrides["train.max_epochs"] = max_epochs
    dev = resolve_device(device)
    local = executor is ExecutorName.LOCAL
    if local and threads is not None and dev.type == "cpu" and threads > (cpus := usable_cpus()):
        err_console.print(
            f"[yellow]warning:[/] --threads {threads} is more than the {cpus} CPUs this process may use; "
            "threads beyond them only take turns, and each one trains its own range of networks in memory"
        )
    work.set_training_threads(threads if local else None)  # DS3's learnability check trains here
    keep_freed_memory()
    with console.status("resolving the preset") as status:

        def selection(p: SelectionProgress) -> None:  # only DS3 presets train while resolving
            if console.is_terminal:
                status.update(
                    f"learnability check: batch {p.batch} ({p.batch_size} automata), epoch "
                    f"{p.epochs_done}/{p.epochs}; {p.n_kept}/{p.count} automata kept, {p.n_tried} tried"
                )

        workdir = workdir or _default_workdir(preset)
        if workdir.is_dir():  # said plainly here, before SQLite says it its own way
            writable_dir(workdir)
        config = load_preset(preset, overrides, progress=selection, device=str(dev), known=_stored(workdir))
    kernels = work.population_for(config.model, dev).kernels
    if local:
        from mlc.executors import LocalExecutor

        where = f"on {dev} ({kernels})"
        trainer = LocalExecutor(workdir, dev, population_size, None, threads)
    else:
        where = f"in Ray tasks ({ray_address or 'a local Ray instance'}, device {trainer.device})"
    if as_json:
        emit_json("run", experiment=config.name, tasks=list(config.tasks),
                  networks_per_task=config.networks_per_task, max_epochs=config.train.max_epochs,
                  device=str(dev), kernels=kernels, executor=executor.value,
                  workdir=str(workdir))  # fmt: skip
    else:
        console.print(
            f"[bold]{config.name}[/]: {counted(len(config.tasks), 'task')} x "
            f"{counted(config.n_networks_per_task, 'network')}"
            f"{f' ({len(config.variants)} settings)' if config.sweep else ''}, "
            f"up to {config.train.max_epochs} epochs, {escape(where)}; workdir {workdir}"
        )
    progress = make_progress(console, log_format, config.train.max_epochs, log_interval)
    with progress:
        trainer.progress = progress
        summary = trainer.run(config)
    for line in summary.repaired:
        err_console.print(f"[yellow]database and dataset disagreed:[/] {escape(line)}")
    if as_json:
        _emit_summary(summary)
    else:
        _print_summary(summary, config.tasks)
    if analyze and summary.finalized and missing_extra("analysis"):
        err_console.print(
            "no analysis report: it needs the analysis extra (pip install 'mlc[analysis]')", markup=False
        )
    elif analyze and summary.finalized:
        from mlc.cli._analyze import write_report

        write_report([summary.dataset_dir], workdir / "analysis", as_json=as_json)


def _stored(workdir: Path) -> list[ExperimentConfig]:
    """The experiments already in `workdir`, so re-running a DS3 preset reuses its selected automata."""
    from mlc.coordinator import connect, list_experiments, sqlite_url
    from mlc.executors import DATABASE_FILE

    db = workdir / DATABASE_FILE
    if not db.exists():
        return []
    engine = connect(sqlite_url(db))
    try:
        return [e.config for e in list_experiments(engine)]
    finally:
        engine.dispose()


def _emit_summary(summary: RunSummary) -> None:
    s = summary.status
    emit_json(
        "summary",
        experiment=summary.experiment,
        networks=s.n_networks,
        finished=s.n_finished,
        converged=s.n_converged,
        failed=s.n_failed,
        epochs=s.epochs_done,
        per_task={
            t: dict(zip(("networks", "finished", "converged"), v, strict=True)) for t, v in s.per_task.items()
        },
        wall_time_s=round(summary.wall_time_s, 1),
        device=summary.device,
        resumed=summary.resumed,
        dataset=str(summary.dataset_dir) if summary.finalized else None,
    )


def _print_summary(summary: RunSummary, tasks: tuple[str, ...]) -> None:
    """Tasks in the preset's order, as `mlc dataset info` lists them."""
    s = summary.status
    table = Table(title=f"{summary.experiment}: networks per task")
    for col in ("task", "networks", "finished", "converged", "converged %"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in sorted(s.per_task, key=lambda t: tasks.index(t) if t in tasks else len(tasks)):
        total, finished, conv = s.per_task[task]
        table.add_row(task, str(total), str(finished), str(conv), f"{100 * conv / max(finished, 1):.0f}%")
    console.print(table)
    mean_epochs = s.epochs_done / max(s.n_networks, 1)
    console.print(
        f"{s.n_finished}/{s.n_networks} networks finished, {s.n_converged} converged "
        f"({100 * s.n_converged / max(s.n_finished, 1):.0f}%), {s.n_failed} failed; "
        f"{s.epochs_done} epochs in all ({mean_epochs:.1f} per network); "
        f"wall time {summary.wall_time_s:.1f} s on {summary.device}"
        + (" (resumed)" if summary.resumed else "")
    )
    if summary.finalized:
        console.print(f"dataset: [bold]{summary.dataset_dir}[/]")
    else:
        console.print("not finished: re-run the same command to resume")


@app.command(short_help="Progress of the run in a workdir.")
def status(
    workdir: Annotated[Path, typer.Option(parser=path_value, help="the run's workdir")] = Path(
        "runs/mlds-smoke"
    ),
) -> None:
    """Progress of the experiments in WORKDIR: networks and work units by state."""
    from mlc.coordinator import (
        check_consistency,
        connect,
        experiment_status,
        list_experiments,
        orphaned_dataset,
        sqlite_url,
    )
    from mlc.errors import StateError
    from mlc.executors import DATABASE_FILE, DATASET_DIR, run_in_progress

    db = workdir / DATABASE_FILE
    orphaned = orphaned_dataset(workdir / DATASET_DIR, db)
    if orphaned:
        raise StateError(orphaned)
    if not db.exists():
        raise StateError(
            f"no run in {workdir} (no {DATABASE_FILE}); start one with `mlc run PRESET --workdir {workdir}`"
        )
    running = run_in_progress(workdir)
    # while a run trains, the leased units are in flight and the ready ones wait their turn
    left = {True: "left, a run is training them", False: "to train", None: "not finished"}[running]
    engine = connect(sqlite_url(db))
    for exp in list_experiments(engine):
        s = experiment_status(engine, exp.id)
        units = ", ".join(f"{k} {v}" for k, v in sorted(s.units.items()))
        console.print(
            f"[bold]{exp.name}[/]: {s.n_finished}/{s.n_networks} networks finished, "
            f"{s.n_converged} converged, {s.n_failed} failed, {s.n_training} {left}; "
            f"{s.epochs_done} epochs; work units: {units}; dataset {workdir / DATASET_DIR}"
        )
        findings = check_consistency(engine, exp, workdir / DATASET_DIR).findings()
        for line in findings:
            err_console.print(f"[yellow]database and dataset disagree:[/] {escape(line)}")
        if (s.n_training or findings) and running is False:
            console.print("no run in progress: re-run the same `mlc run` command to resume")
    engine.dispose()


@app.command()
def presets() -> None:
    """List the shipped presets."""
    from mlc.work import describe_preset, preset_names

    listing = Table.grid(padding=(0, 2))  # descriptions wrap under themselves, not under the names
    listing.add_column(no_wrap=True)
    listing.add_column()
    for name in preset_names():
        listing.add_row(name, describe_preset(name))
    console.print(listing)
