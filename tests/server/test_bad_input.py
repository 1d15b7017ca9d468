"""Bad input against a real server: every malformed or foreign request is refused with a 4xx status
and a reason, and nothing of it is stored. One server (SQLite) for the module; two registered hosts,
each holding one leased unit, and an honest result for host A's unit trained here."""

from __future__ import annotations

import base64
import json
import pickle
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy
from server_setup import SMALL_PRESET, RunningServer, free_port

from mlc.coordinator import sqlite_url
from mlc.work import WorkerRuntime, WorkUnit, WorkUnitSpec

pytestmark = pytest.mark.slow


@dataclass
class Host:
    client: httpx.Client
    wu_id: str
    unit: WorkUnit


@dataclass
class Setup:
    server: RunningServer
    a: Host
    b: Host
    honest: bytes  # host A's result for its unit, as its worker would upload it


def _register(server: RunningServer, name: str) -> httpx.Client:
    answer = httpx.post(f"{server.url}/api/v1/hosts", json={"name": name}, timeout=30)
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    return httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _lease_one(client: httpx.Client) -> tuple[str, WorkUnit]:
    answer = client.post("/work/lease", json={"max_networks": 1})
    assert answer.status_code == 200, answer.text
    (leased,) = answer.json()["units"]
    state = base64.b64decode(leased["state_b64"]) if leased["state_b64"] else None
    return leased["wu_id"], WorkUnit(WorkUnitSpec.from_json(leased["spec_json"]), state)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("bad-input")
    port = free_port()
    server = RunningServer(
        f"http://127.0.0.1:{port}", tmp / "server", sqlite_url(tmp / "mlc.db"), port, tmp / "server.log"
    )
    server.start()
    try:
        server.submit(SMALL_PRESET)
        a, b = _register(server, "host-a"), _register(server, "host-b")
        (wu_a, unit_a), (wu_b, unit_b) = _lease_one(a), _lease_one(b)
        runtime = WorkerRuntime("cpu", threads=1, checkpoint_dir=tmp / "checkpoints")
        (result,) = runtime.train([unit_a])
        yield Setup(server, Host(a, wu_a, unit_a), Host(b, wu_b, unit_b), result.to_bytes())
        a.close()
        b.close()
    finally:
        server.stop()


def _put(client: httpx.Client, wu_id: str, body: bytes, **headers: str) -> httpx.Response:
    return client.put(
        f"/results/{wu_id}", content=body, headers={"Content-Type": "application/octet-stream", **headers}
    )


def _rewritten(blob: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The result with its tensors changed by `change(tensors)`, its header document kept."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    metadata = json.loads(blob[8 : 8 + header_len])["__metadata__"]
    tensors = {k: v.copy() for k, v in load_numpy(blob).items()}
    change(tensors)
    return save_numpy(tensors, metadata=metadata)


def _nothing_stored(setup: Setup, host: Host) -> None:
    verdicts = host.client.get(f"/results/{host.wu_id}")
    assert verdicts.status_code == 200 and verdicts.json() == [], verdicts.text


def _refused(answer: httpx.Response, code: int, words: str) -> None:
    assert answer.status_code == code, answer.text
    assert words in answer.json()["detail"], answer.json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "not-bearer"],
)
def test_calls_without_a_valid_host_token_are_refused(setup: Setup, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=f"{setup.server.url}/api/v1", headers=headers, timeout=30) as anonymous:
        _refused(anonymous.post("/work/lease", json={"max_networks": 1}), 401, "token")
        _refused(anonymous.post("/work/extend", json={"wu_ids": [setup.a.wu_id]}), 401, "token")
        _refused(_put(anonymous, setup.a.wu_id, setup.honest), 401, "token")
    _nothing_stored(setup, setup.a)


def test_another_hosts_token_cannot_upload_or_extend_a_lease(setup: Setup) -> None:
    _refused(_put(setup.b.client, setup.a.wu_id, setup.honest), 403, "not leased to this host")
    assert setup.b.client.post("/work/extend", json={"wu_ids": [setup.a.wu_id]}).json()["held"] == []
    _nothing_stored(setup, setup.a)


def test_a_result_for_a_unit_leased_to_another_host_is_refused(setup: Setup) -> None:
    # host A's valid bytes, sent by A under B's unit: the unit is not A's to report
    _refused(_put(setup.a.client, setup.b.wu_id, setup.honest), 403, "not leased to this host")
    _nothing_stored(setup, setup.b)


@pytest.mark.parametrize(
    ("name", "change", "words"),
    [
        ("nan", lambda t: t["state.params"].__setitem__((0, 5), np.nan), "NaN"),
        ("inf-moment", lambda t: t["state.exp_avg_sq"].__setitem__((0, 0), np.inf), "NaN or infinite"),
        ("shape", lambda t: t.__setitem__("state.params", t["state.params"][:, :-1].copy()), "shape"),
        ("dtype", lambda t: t.__setitem__("state.params", t["state.params"].astype(np.float64)), "float64"),
        ("missing", lambda t: t.pop("history.val_loss"), "missing"),
        ("extra", lambda t: t.__setitem__("payload", np.zeros(3, np.float32)), "unexpected"),
    ],
)
def test_malformed_results_are_refused_with_a_reason(setup: Setup, name: str, change, words: str) -> None:  # type: ignore[no-untyped-def]
    _refused(_put(setup.a.client, setup.a.wu_id, _rewritten(setup.honest, change)), 422, words)
    _nothing_stored(setup, setup.a)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (pickle.dumps({"state.params": [1.0, 2.0]}), "safetensors"),
        (b"\x00" * 4, "too short"),
        (bytes(range(256)) * 8, "not a safetensors file"),
        (struct.pack("<Q", 2) + b"{}", "no readable result document"),
    ],
    ids=["pickle", "short", "garbage", "no-document"],
)
def test_files_that_are_not_results_are_refused(setup: Setup, body: bytes, words: str) -> None:
    _refused(_put(setup.a.client, setup.a.wu_id, body), 422, words)
    _nothing_stored(setup, setup.a)


def test_a_body_over_the_limit_is_refused_before_it_is_read(setup: Setup) -> None:
    """Declares one byte over the limit and sends a few: the answer comes from the header alone (a
    raw socket, since an HTTP client will not send fewer bytes than it declares)."""
    limit = 64 * 1024 * 1024  # ServerSettings.max_upload_bytes' default
    token = setup.a.client.headers["Authorization"]
    host, port = setup.server.url.removeprefix("http://").split(":")
    request = (
        f"PUT /api/v1/results/{setup.a.wu_id} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {limit + 1}\r\n\r\n"
    ).encode() + b"x" * 16
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:500]
    assert b"at most" in rest.partition(b"\r\n\r\n")[2], answer[:500]
    _nothing_stored(setup, setup.a)


def test_an_unknown_unit_is_404_and_a_misspelt_field_is_422(setup: Setup) -> None:
    _refused(_put(setup.a.client, "no-such-unit", setup.honest), 404, "no work unit")
    answer = setup.a.client.post("/work/lease", json={"max_networks": 1, "max_netwroks": 2})
    assert answer.status_code == 422 and "max_netwroks" in answer.text


def test_an_honest_upload_then_its_replay_is_a_no_op(setup: Setup) -> None:
    first = _put(setup.a.client, setup.a.wu_id, setup.honest)
    assert first.status_code == 200 and first.json()["outcome"] == "accepted", first.text
    again = _put(setup.a.client, setup.a.wu_id, setup.honest)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate", again.text
    assert again.json()["sha256"] == first.json()["sha256"]
    verdicts = setup.a.client.get(f"/results/{setup.a.wu_id}").json()
    assert len(verdicts) == 1  # stored once


def test_tampered_weights_with_a_false_claimed_loss_are_judged_invalid(setup: Setup) -> None:
    """Well formed, so the upload is taken for validation (re-evaluating weights is the validator's
    work, not the API's); the validator finds the claimed loss false, nothing is assimilated, and the
    host that sent it is trusted no more."""

    def tamper(tensors: dict[str, np.ndarray]) -> None:
        tensors["state.params"] += np.float32(0.5)  # other weights ...
        tensors["history.val_loss"][:, -1] = np.float32(1e-4)  # ... claiming a loss they do not reach

    forged = _rewritten(setup.honest, tamper)
    first = _put(setup.b.client, setup.b.wu_id, _retarget(forged, setup))
    assert first.status_code in (200, 422), first.text
    if first.status_code == 422:  # the upload check already saw through it
        _nothing_stored(setup, setup.b)
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        verdicts = setup.b.client.get(f"/results/{setup.b.wu_id}")
        if verdicts.status_code == 403:  # judged invalid: the host is untrusted and gets nothing more
            break
        if verdicts.json() and verdicts.json()[0]["verdict"] != "pending":
            break
        time.sleep(0.5)
    with setup.server.admin() as admin:
        hosts = {h["name"]: h for h in admin.get("/admin/hosts").json()}
    assert hosts["host-b"]["trust"] == "untrusted", hosts["host-b"]
    _refused(setup.b.client.post("/work/lease", json={"max_networks": 1}), 403, "no more work")


def _retarget(blob: bytes, setup: Setup) -> bytes:
    """Host A's result made to name host B's unit and members, as a forger with B's lease would."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    metadata = json.loads(blob[8 : 8 + header_len])["__metadata__"]
    document = json.loads(metadata["mlc.result"])
    document["wu_id"] = setup.b.wu_id
    document["members"] = [m.net_id for m in setup.b.unit.spec.members]
    metadata["mlc.result"] = json.dumps(document, sort_keys=True)
    return save_numpy(load_numpy(blob), metadata=metadata)


def test_the_server_still_serves_after_all_of_it(setup: Setup) -> None:
    assert httpx.get(f"{setup.server.url}/api/v1/status", timeout=30).status_code == 200
