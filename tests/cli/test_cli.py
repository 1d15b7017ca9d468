"""The `mlc` command line as a user runs it: a real process, real files."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).parents[2] / "src")


def mlc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "mlc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_run_status_info_verify_export(tiny_preset, tmp_path):
    work = tmp_path / "w"
    run = mlc(
        "run",
        str(tiny_preset),
        "--workdir",
        str(work),
        "--device",
        "cpu",
        "--no-analyze",
        "--networks-per-task",
        "1",
        "--max-epochs",
        "2",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "2/2 networks finished" in run.stdout and "dataset:" in run.stdout

    status = mlc("status", "--workdir", str(work), cwd=tmp_path)
    assert status.returncode == 0 and "2/2 networks finished" in status.stdout

    info = mlc("dataset", "info", str(work / "dataset"), cwd=tmp_path)
    assert info.returncode == 0 and "SingleDirectModified" in info.stdout
    assert "model mlds-gru [mlds-gru/" in info.stdout  # the layout id, not swallowed as markup

    verify = mlc("dataset", "verify", str(work / "dataset"), cwd=tmp_path)
    assert verify.returncode == 0 and verify.stdout.startswith("OK")

    export = mlc(
        "dataset",
        "export",
        str(work / "dataset"),
        "--per-task",
        "1",
        "--out",
        str(tmp_path / "rel"),
        cwd=tmp_path,
    )
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "rel" / "TINY-1.tar.xz").exists()
    hf = mlc("dataset", "export", str(work / "dataset"), "--format", "hf", "--out", str(tmp_path / "hf"),
             cwd=tmp_path)
    assert hf.returncode == 0, hf.stderr
    assert (tmp_path / "hf" / "data" / "train-00000-of-00001.parquet").exists()
    no_count = mlc("dataset", "export", str(work / "dataset"), "--out", str(tmp_path / "r2"), cwd=tmp_path)
    assert no_count.returncode == 2 and "--per-task is required" in no_count.stderr

    report = mlc("analyze", str(work / "dataset"), "--out", str(tmp_path / "analysis"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "too few networks" in report.stdout  # one network per task: reported, not dropped
    for name in ("report.md", "report.html", "trojan_detection.csv", "training_curves.png"):
        assert (tmp_path / "analysis" / name).exists(), name
    for name in ("task_confusion.png", "learning_curve.png"):  # too few networks: no placeholders
        assert not (tmp_path / "analysis" / name).exists(), name
    assert "No figure: no question has enough networks" in (tmp_path / "analysis" / "report.md").read_text()

    # a different setting under the same workdir is refused, nothing is touched
    clash = mlc(
        "run",
        str(tiny_preset),
        "--workdir",
        str(work),
        "--device",
        "cpu",
        "--no-analyze",
        "--networks-per-task",
        "1",
        "--max-epochs",
        "3",
        cwd=tmp_path,
    )
    assert clash.returncode == 2 and "other settings (train.max_epochs: stored 2, asked 3)" in clash.stderr

    shard = next((work / "dataset" / "weights").glob("*.safetensors"))
    blob = bytearray(shard.read_bytes())
    blob[-5] ^= 0xFF
    shard.write_bytes(bytes(blob))
    broken = mlc("dataset", "verify", str(work / "dataset"), cwd=tmp_path)
    assert broken.returncode == 1 and shard.name in broken.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "no-such-preset"], "unknown preset"),
        (["run", "mlds-smoke", "--max-epochs", "0"], "max-epochs"),
        (["run", "mlds-smoke", "--device", "tpu"], "unknown device"),
        (["dataset", "verify", "."], "not an MLC dataset"),
        (["status", "--workdir", "nowhere"], "no run in nowhere"),
        (["status"], "no run in runs/mlds-smoke"),  # the default workdir, that of `make run`
        (["analyze", "ds", "--out", "report"], "is not an MLC dataset manifest"),  # and makes no folder
        (["analyze", "ds", "--out", "a/b/report"], "is not an MLC dataset manifest"),  # nor its parents
        (["analyze", "ds", "--out", "report", "--max-per-class", "9"], "greater than or equal to 10"),
        (["analyze", "ds", "--out", "report", "--converged-only"], "is not an MLC dataset manifest"),
        (["dataset", "info", "."], "it has no dataset.json (the dataset in it is ds)"),
        (["run", "mlds-smoke", "--workdir", "afile"], "cannot use afile as the workdir"),
        (["run", "nope", "--device", "cpu", "--threads", "1000"], "--threads 1000 is more than the"),
        (["analyze", "ds", "--out", "ds"], "ds is in the dataset"),
        (["analyze", "ds", "--out", "ds/report"], "write the report into a folder of its own"),
        (["analyze", "ds", "--out", "afile"], "afile is a file: write the report into a folder"),
        (["run", "mlds-smoke", "--workdir", ""], "'--workdir': is empty; to mean the current folder"),
        (["status", "--workdir", " "], "'--workdir': is empty"),
        (["analyze", "ds", "--out", ""], "'--out': is empty"),
        (["analyze", ""], "'datasets': is empty"),
        (["dataset", "export", "ds", "--per-task", "1", "--out", ""], "'--out': is empty"),
        (["run", "mlds-smoke", "--log-format", "xml"], "'xml' is not one of auto, rich, text, json"),
        (["run", "mlds-smoke", "--log-interval", "-1"], "--log-interval"),
    ],
)
def test_bad_input_is_refused_with_a_reason(args, message, tmp_path):
    (tmp_path / "afile").write_text("in the way")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset.json").write_text("{}")  # enough to look like a dataset
    result = mlc(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr.replace("\n", " ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ds"]  # nothing written


def test_malformed_preset_file_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntasks = [\n')
    result = mlc("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "invalid TOML" in result.stderr
    bad.write_text(
        'name = "x"\nmodel = "mlds-gru"\nspec_version = "1"\nseed = 1\ntasks = ["Nope"]\n'
        "networks_per_task = 1\nnetworks_per_wu = 1\nepochs_per_wu = 1\n"
    )
    result = mlc("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "[data] needs a `seed`" in result.stderr
    bad.write_text(bad.read_text() + "[data]\nseed = 1\n")
    result = mlc("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "unknown task 'Nope'" in result.stderr


# Python's own SIGINT handler whatever the test runner's (a background job's children ignore SIGINT)
_WITH_CTRL_C = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); import mlc.cli; mlc.cli.main()"
)


@pytest.mark.slow
def test_ctrl_c_stops_a_run_at_once_and_says_how_to_resume(tiny_preset, tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="200")
    args = ["run", str(tiny_preset), "--workdir", str(tmp_path / "w"), "--device", "cpu", "--no-analyze"]
    args += ["--networks-per-task", "4", "--max-epochs", "100000", "--threads", "2"]
    with subprocess.Popen(
        [sys.executable, "-c", _WITH_CTRL_C, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:
        watchdog = threading.Timer(120, run.kill)  # a run that never starts must fail, not hang
        watchdog.start()
        for line in run.stdout:  # training has started once this is printed
            if " at once" in line:
                break
        else:
            pytest.fail(f"the run ended without starting to train: {run.stderr.read()}")
        watchdog.cancel()
        time.sleep(2.0)
        during = mlc("status", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
        assert "8 left, a run is training them" in during.stdout, during.stdout + during.stderr
        run.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = run.communicate(timeout=60)
        stopped_after = time.monotonic() - interrupted
    assert run.returncode == 130, stderr
    assert "interrupted: re-run the same command to resume" in stderr
    assert "go back to the end of their last finished work unit" in " ".join(stderr.split())
    assert stopped_after < 10  # it stops rather than training on (typically well under a second)
    status = mlc("status", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert "8 to train" in status.stdout and "no run in progress: re-run the same" in status.stdout
    shutil.copytree(tmp_path / "w", tmp_path / "copy")  # the copy's status names its own dataset
    status = mlc("status", "--workdir", str(tmp_path / "copy"), cwd=tmp_path)
    assert f"dataset {tmp_path / 'copy' / 'dataset'}" in " ".join(status.stdout.split())


def test_help_fits_80_columns_with_computed_defaults_and_one_line_summaries(tmp_path):
    """Defaults that are computed at run time are written in brackets ("[all cores]"), which Typer's
    rich markup mode took for style tags and dropped; its option table also cropped names to
    "--networks-per-ta…" at 80 columns; and the command list must show each command's summary whole."""
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="80")

    def help_of(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlc", *args, "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in done.stdout.splitlines()) <= 80
        return done.stdout

    run_help = help_of("run")
    for shown in ("[runs/PRESET]", "[from memory]", "[all cores]", "--networks-per-task", "--threads"):
        assert shown in run_help
    assert "…" not in run_help
    for group, commands in (
        ((), ("analyze", "run", "status", "presets", "dataset")),
        (("dataset",), ("info", "verify", "export")),
    ):
        listing = help_of(*group).splitlines()
        for command in commands:
            summary = next(line for line in listing if line.startswith(f"  {command} "))
            assert not summary.endswith("..."), summary


def test_the_run_summary_and_dataset_info_list_tasks_in_the_preset_order(tiny_preset, tmp_path):
    reversed_preset = tmp_path / "reversed.toml"
    reversed_preset.write_text(
        tiny_preset.read_text().replace(
            'tasks = ["SingleDirectMachine", "SingleDirectModified"]',
            'tasks = ["SingleDirectModified", "SingleDirectMachine"]',
        )
    )
    work = tmp_path / "w"
    args = ["--workdir", str(work), "--device", "cpu", "--no-analyze", "--networks-per-task", "1"]
    run = mlc("run", str(reversed_preset), *args, "--max-epochs", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    info = mlc("dataset", "info", str(work / "dataset"), cwd=tmp_path)
    for output in (run.stdout, info.stdout):
        assert output.index("SingleDirectModified") < output.index("SingleDirectMachine"), output
    row = next(line for line in info.stdout.splitlines() if "SingleDirectMachine" in line)
    loss = [cell.strip() for cell in row.split("│") if cell.strip()][-2]
    assert len(loss.split(".")[1]) == 4  # the median loss at four decimals, as every row has it


def test_the_cli_class_cap_minimum_is_the_analysis_minimum():
    """The CLI states it without importing the analysis (scikit-learn) at start-up."""
    import typing

    from mlc.analysis import MIN_PER_CLASS
    from mlc.cli import _analyze

    option = typing.get_type_hints(_analyze.analyze, include_extras=True)["max_per_class"]
    assert option.__metadata__[0].min == MIN_PER_CLASS


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("sklearn", ["analyze", "ds", "--out", "o"], "analysis"),
        ("fastapi", ["server", "--workdir", "s"], "server"),
        ("psycopg", ["server", "--workdir", "s", "--db", "postgresql+psycopg://h/db"], "postgres"),
    ],
)
def test_a_command_whose_extra_is_missing_says_what_to_install(blocked, args, extra, tmp_path):
    """The base install trains and stores; a command of another role names its `pip install`."""
    code = (
        f"import sys, runpy; sys.modules[{blocked!r}] = None; sys.argv = ['mlc', *{args!r}]\n"
        "runpy.run_module('mlc', run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="200")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"needs the {extra} extra ({blocked} is not installed): pip install 'mlc[{extra}]'" in done.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
def test_the_base_install_trains_and_stores_without_the_analysis_or_server_extras(tiny_preset, tmp_path):
    blocked = ["sklearn", "matplotlib", "umap", "fastapi", "uvicorn", "pydantic_settings", "triton", "ray"]
    args = ["run", str(tiny_preset), "--workdir", "w", "--device", "cpu", "--networks-per-task", "1",
            "--max-epochs", "2"]  # fmt: skip
    code = (
        f"import sys, runpy\nfor m in {blocked!r}:\n    sys.modules[m] = None\n"
        f"sys.argv = ['mlc', *{args!r}]\nrunpy.run_module('mlc', run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC, COLUMNS="200")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2/2 networks finished" in done.stdout and (tmp_path / "w" / "dataset" / "dataset.json").exists()
    assert "no analysis report: it needs the analysis extra (pip install 'mlc[analysis]')" in done.stderr
    assert not (tmp_path / "w" / "analysis").exists()
