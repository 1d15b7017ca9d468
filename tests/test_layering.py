"""Import boundaries of DESIGN.md's layers, checked in fresh interpreters via sys.modules."""

import json
import subprocess
import sys

import pytest

WEB_AND_DB = ("sqlalchemy", "fastapi", "httpx", "uvicorn", "starlette")


def loaded_after(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in json.loads(out)} | set(json.loads(out))


def test_import_mlc_loads_neither_torch_nor_a_web_stack():
    loaded = loaded_after("mlc")
    assert not loaded & {"torch", "numpy", *WEB_AND_DB}


def test_tasks_never_import_torch():
    assert "torch" not in loaded_after("mlc.tasks")


@pytest.mark.parametrize(
    "layer", ["mlc.tasks", "mlc.models", "mlc.train", "mlc.work", "mlc.store", "mlc.dataset"]
)
def test_science_layers_import_no_database_or_http(layer):
    assert not loaded_after(layer) & set(WEB_AND_DB)


def test_models_and_train_know_nothing_of_work_or_storage():
    for layer in ("mlc.models", "mlc.train"):
        loaded = loaded_after(layer)
        assert not loaded & {"mlc.work", "mlc.store", "mlc.coordinator", "safetensors", "pyarrow"}, layer


def test_analysis_does_not_pull_in_training_or_the_coordinator():
    loaded = loaded_after("mlc.analysis")
    assert not loaded & {"mlc.train", "mlc.coordinator", "mlc.executors", "umap", *WEB_AND_DB}


def test_ray_is_loaded_only_by_the_ray_executor_being_made():
    """Ray is an optional extra: importing the executors (and so `mlc run`) must work without it."""
    assert "ray" not in loaded_after("mlc.executors")
HEAVY = {"torch", "sklearn", "matplotlib", "umap", "fastapi", "uvicorn", "triton"}


@pytest.mark.parametrize("args", [["--help"], ["presets"], ["--version"], ["run", "--help"]])
def test_the_cli_loads_no_heavy_library_for_help_presets_or_version(args):
    """`mlc --help` and `mlc presets` answer at once: torch and the analysis and web stacks are
    imported only by the commands that train, evaluate, analyse or serve."""
    code = (
        "import json, sys, runpy\n"
        f"sys.argv = ['mlc', *{args!r}]\n"
        "try:\n    runpy.run_module('mlc', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stderr.splitlines()[-1])}
    assert not loaded & HEAVY
    assert done.stdout  # it did answer
