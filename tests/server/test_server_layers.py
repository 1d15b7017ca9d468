"""What each side loads: the API's lease and upload path no torch, the worker no server stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server_setup import SMALL_PRESET

from mlc.coordinator import CoordinatorService, connect, create_experiment, register_host, sqlite_url
from mlc.work import WorkerRuntime, preset_from_text

_CHILD = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from mlc.coordinator import connect
from mlc.server import ServerSettings, create_app

args = json.loads(sys.argv[1])
settings = ServerSettings(workdir=Path(args["workdir"]))
app = create_app(settings, connect(settings.database_url))
auth = {"Authorization": "Bearer " + args["token"]}
upload, result = "/api/v1/results/" + args["wu_id"], Path(args["result"]).read_bytes()
with TestClient(app, headers=auth) as client:
    codes = {
        "lease": client.post("/api/v1/work/lease", json={"max_networks": 4}).status_code,
        "extend": client.post("/api/v1/work/extend", json={"wu_ids": [args["wu_id"]]}).status_code,
        "upload": client.put(upload, content=result).json()["outcome"],
        "garbage": client.put(upload, content=b"not a result").status_code,
        "status": client.get("/api/v1/status").status_code,
        "experiments": client.get("/api/v1/experiments").status_code,
    }
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


def test_the_lease_and_upload_path_loads_no_torch(tmp_path: Path) -> None:
    engine = connect(sqlite_url(tmp_path / "mlc.db"))
    create_experiment(engine, preset_from_text(SMALL_PRESET), tmp_path / "datasets" / "small")
    host, token = register_host(engine, "h", {})
    (unit,) = CoordinatorService(engine).lease(host.owner, 1, 3600.0)
    (result,) = WorkerRuntime("cpu").train([unit])
    (tmp_path / "result.safetensors").write_bytes(result.to_bytes())
    engine.dispose()
    args = {
        "workdir": str(tmp_path),
        "token": token,
        "wu_id": unit.spec.wu_id,
        "result": str(tmp_path / "result.safetensors"),
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["codes"] == {
        "lease": 200,
        "extend": 200,
        "upload": "accepted",
        "garbage": 422,
        "status": 200,
        "experiments": 200,
    }
    assert seen["torch"] is False


def test_the_worker_loads_no_server_stack() -> None:
    code = "import json, sys; import mlc.worker; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)} | set(json.loads(out))
    assert not loaded & {
        "sqlalchemy",
        "fastapi",
        "uvicorn",
        "starlette",
        "alembic",
        "mlc.server",
        "mlc.coordinator",
    }
