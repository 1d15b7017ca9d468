"""How many work units one `mlc server` moves on this machine: many simulated hosts (one per unit,
served by httpx clients in several processes, threads within each) lease and upload tiny real work
units against one server process on loopback, on SQLite and on PostgreSQL.

Three timed phases per database, the server running `--role api` (no daemon in its process):

1. lease: every host leases one unit (p50/p99 latency per lease);
2. (untimed) each client process trains the units its hosts hold, as one population: real results;
3. upload: every host uploads its result (p50/p99 latency per upload; each checked by the upload
   precheck and stored);

then a validator process (`--role validator`, one training thread) judges them all: networks
re-evaluated per second on one core. The anchor is BOINC's published capacity of one server, about
8.8 million tasks a day (102 per second); the last line is units through lease and accepted upload
per second, divided by 102.

    python benchmarks/server_load.py [--db sqlite|postgres|both] [--units 2000] [--processes 4]
        [--threads 8]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

BOINC_UNITS_PER_S = 102.0  # 8.8 million tasks a day, BOINC's single-server figure
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TASKS = [
    "SingleDirectMachine",
    "SingleInvertMachine",
    "SimpleXORMachine",
    "EightBitMachine",
    "ParityMachine",
    "SingleDirectModified",
    "SingleInvertModified",
    "SimpleXORModified",
    "EightBitModified",
    "ParityModified",
]


def preset(units: int) -> str:
    per_task = max(1, units // len(TASKS))
    return f"""
name = "load"
model = "mlds-gru"
spec_version = "mlds-1"
seed = 11
tasks = {TASKS!r}
networks_per_task = {per_task}
networks_per_wu = 1
epochs_per_wu = 1
replay_segments = 1
subsets = [{per_task}]

[data]
seed = 5
n_train = 16
n_val = 8
length = 8

[train]
max_epochs = 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(role: str, workdir: Path, db_url: str, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlc", "server", "--workdir", str(workdir), "--db", db_url,
           "--port", str(port), "--role", role]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/status", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not come up")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def client_process(
    url: str,
    hosts: int,
    threads: int,
    phase_q: mp.Queue,
    go: tuple[mp.Event, mp.Event],
    result_q: mp.Queue,
) -> None:
    """`hosts` simulated hosts served by `threads` threads (each with one keep-alive connection):
    every host registers (untimed), then on the first signal leases one unit, and on the second
    uploads its trained result."""
    from mlc.work import WorkerRuntime, WorkUnit, WorkUnitSpec

    conns = [httpx.Client(base_url=f"{url}/api/v1", timeout=300) for _ in range(threads)]
    tokens = [
        conns[0].post("/hosts", json={"name": f"load-{uuid.uuid4().hex[:8]}"}).json()["token"]
        for _ in range(hosts)
    ]
    leased: list[dict | None] = [None] * hosts
    lease_latency: list[float] = []
    upload_latency: list[float] = []
    accepted = [0]
    lock = threading.Lock()

    def auth(i: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[i]}"}

    def lease(t: int) -> None:
        for i in range(t, hosts, threads):
            t0 = time.perf_counter()
            answer = conns[t].post("/work/lease", json={"max_networks": 1}, headers=auth(i))
            dt = time.perf_counter() - t0
            answer.raise_for_status()
            units = answer.json()["units"]
            with lock:
                lease_latency.append(dt)
            leased[i] = units[0] if units else None

    go[0].wait()
    t0 = time.perf_counter()
    _run_threads(lease, threads)
    held = [(i, u) for i, u in enumerate(leased) if u is not None]
    phase_q.put(("leased", time.perf_counter() - t0, len(held)))

    units = [
        WorkUnit(WorkUnitSpec.from_json(u["spec_json"]),
                 base64.b64decode(u["state_b64"]) if u["state_b64"] else None)  # fmt: skip
        for _, u in held
    ]
    with tempfile.TemporaryDirectory() as tmp:
        runtime = WorkerRuntime("cpu", threads=1, checkpoint_dir=Path(tmp))
        results = runtime.train(units) if units else []
    blobs = {i: (u.spec.wu_id, r.to_bytes()) for (i, _), u, r in zip(held, units, results, strict=True)}
    phase_q.put(("trained", 0.0, len(blobs)))

    def upload(t: int) -> None:
        for i in range(t, hosts, threads):
            if i not in blobs:
                continue
            wu_id, blob = blobs[i]
            headers = {**auth(i), "Content-Type": "application/octet-stream"}
            t0 = time.perf_counter()
            answer = conns[t].put(f"/results/{wu_id}", content=blob, headers=headers)
            dt = time.perf_counter() - t0
            answer.raise_for_status()
            with lock:
                upload_latency.append(dt)
                accepted[0] += answer.json()["outcome"] == "accepted"

    go[1].wait()
    t0 = time.perf_counter()
    _run_threads(upload, threads)
    phase_q.put(("uploaded", time.perf_counter() - t0, accepted[0]))
    result_q.put((lease_latency, upload_latency))


def _run_threads(target, n: int) -> None:  # type: ignore[no-untyped-def]
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def run_one(db: str, args: argparse.Namespace) -> float:
    tmp = Path(tempfile.mkdtemp(prefix=f"mlc-load-{db}-"))
    schema = None
    if db == "sqlite":
        from mlc.coordinator import sqlite_url

        db_url = sqlite_url(tmp / "mlc.db")
    else:
        from sqlalchemy import create_engine, text

        schema = f"mlc_load_{uuid.uuid4().hex[:10]}"
        with create_engine(POSTGRES).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        db_url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = start("api", tmp / "server", db_url, port, tmp / "api.log")
    try:
        wait_up(url, api)
        token = (tmp / "server" / "admin.token").read_text().strip()
        answer = httpx.post(f"{url}/api/v1/admin/experiments", json={"preset_toml": preset(args.units)},
                            headers={"Authorization": f"Bearer {token}"}, timeout=600)  # fmt: skip
        answer.raise_for_status()
        ctx = mp.get_context("spawn")
        phase_q, result_q, go = ctx.Queue(), ctx.Queue(), (ctx.Event(), ctx.Event())
        per_process = -(-args.units // args.processes)
        procs = [ctx.Process(target=client_process,
                             args=(url, per_process, args.threads, phase_q, go, result_q))
                 for _ in range(args.processes)]  # fmt: skip
        for p in procs:
            p.start()
        registered = 0
        while registered < args.processes * per_process:  # every host registers before the clock starts
            time.sleep(1)
            with httpx.Client(timeout=60) as admin:
                registered = len(admin.get(f"{url}/api/v1/admin/hosts",
                                           headers={"Authorization": f"Bearer {token}"}).json())  # fmt: skip
        t0 = time.perf_counter()
        go[0].set()
        leased = [phase_q.get() for _ in procs]
        lease_s = time.perf_counter() - t0
        n_leased = sum(n for _, _, n in leased)
        trained = [phase_q.get() for _ in procs]
        assert sum(n for _, _, n in trained) == n_leased
        t1 = time.perf_counter()
        go[1].set()
        uploaded = [phase_q.get() for _ in procs]
        upload_s = time.perf_counter() - t1
        n_accepted = sum(n for _, _, n in uploaded)
        lease_lat, upload_lat = [], []
        for _ in procs:
            a, b = result_q.get()
            lease_lat += a
            upload_lat += b
        for p in procs:
            p.join()
    finally:
        stop(api)
    validator = start("validator", tmp / "server", db_url, free_port(), tmp / "validator.log")
    t2 = time.perf_counter()
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        while True:
            with engine.connect() as conn:
                pending = conn.execute(text("SELECT count(*) FROM results WHERE verdict = 'pending'"))
                pending = pending.scalar()
            if not pending:
                break
            if validator.poll() is not None:
                raise SystemExit(f"the validator exited with {validator.returncode}")
            time.sleep(0.5)
        validate_s = time.perf_counter() - t2
    finally:
        stop(validator)
        engine.dispose()
        if schema:
            with create_engine(POSTGRES).begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    rate = n_accepted / (lease_s + upload_s)
    print(f"\n{db}: {n_leased} units, each leased and uploaded by its own host; {args.processes} client "
          f"processes of {args.threads} threads")  # fmt: skip
    print(f"  lease   {n_leased / lease_s:8.1f} units/s   p50 {pct(lease_lat, 50):6.1f} ms  "
          f"p99 {pct(lease_lat, 99):6.1f} ms")
    print(f"  upload  {n_accepted / upload_s:8.1f} units/s   p50 {pct(upload_lat, 50):6.1f} ms  "
          f"p99 {pct(upload_lat, 99):6.1f} ms  ({n_accepted} accepted)")
    print(f"  lease + accepted upload: {rate:.1f} units/s")
    print(f"  validator (one process, one thread): {n_accepted / validate_s:.1f} networks re-evaluated/s "
          f"(with segment replay; start-up included)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8, help="client threads per process")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; server: one uvicorn process (--role api); clients on the same machine")
    rates = {db: run_one(db, args) for db in (["sqlite", "postgres"] if args.db == "both" else [args.db])}
    for db, rate in rates.items():
        print(f"{db}: ratio vs BOINC single server: {rate / BOINC_UNITS_PER_S:.2f}x")


if __name__ == "__main__":
    main()
