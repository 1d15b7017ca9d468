"""After a real run (a server process and two `mlc worker` processes, one linked to a volunteer's
account): the credit the API shows comes from the units' FLOP counts, the worker relinks with
--account-key, and the project's pages, in headless Debian chromium, load without console errors,
show the API's numbers and fit 1280 and 390 pixel wide windows without sideways scrolling.

Screenshots go to $MLC_PAGES_SCREENSHOTS (a folder) where it is set, else to the test's tmp folder."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from server_setup import RunningServer, env_with_src, free_port

from mlc.coordinator import sqlite_url
from mlc.coordinator._credit import COBBLESTONE_FLOP, RAC_HALF_LIFE_DAYS
from mlc.models import MLDS_GRU
from mlc.server._pages import format_credit

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# SMALL_PRESET's units: one network for 2 epochs of 64 training and 16 validation sequences of 12
UNIT_CREDIT = 2 * (MLDS_GRU.train_flop(64, 12) + MLDS_GRU.forward_flop(16, 12)) / COBBLESTONE_FLOP


@dataclass
class Run:
    server: RunningServer
    api: str
    account: dict
    tmp: Path


def _worker(server: RunningServer, tmp: Path, name: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlc", "worker", "--server", server.url, "--workdir", str(tmp / name)]
    cmd += ["--threads", "1", "--name", name, "--exit-when-idle", *args]
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(cmd, env=env_with_src(), stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """SMALL_PRESET trained to the end by w0 (linked to Ada's account) and w1 (no account)."""
    tmp = tmp_path_factory.mktemp("credit")
    port = free_port()
    server = RunningServer(
        f"http://127.0.0.1:{port}", tmp / "server", sqlite_url(tmp / "mlc.db"), port, tmp / "server.log"
    )
    server.start()
    try:
        server.submit()
        api = f"{server.url}/api/v1"
        account = httpx.post(f"{api}/accounts", json={"name": "Ada", "email": "ada@example.org"}).json()
        key = account["account_key"]
        workers = [_worker(server, tmp, "w0", "--account-key", key), _worker(server, tmp, "w1")]
        for proc in workers:
            assert proc.wait(timeout=300) == 0, (tmp / "w0.log").read_text()[-2000:]
        server.wait_finished("small", timeout=60)
        yield Run(server, api, account, tmp)
    finally:
        server.stop()


def _hosts(run: Run) -> dict[str, dict]:
    with run.server.admin() as admin:
        ids = {h["name"]: h["host_id"] for h in admin.get("/admin/hosts").json()}
    return {name: httpx.get(f"{run.api}/hosts/{i}").json() for name, i in ids.items()}


def test_credit_is_the_units_flop_count_for_host_and_volunteer(run: Run) -> None:
    hosts = _hosts(run)
    assert sum(h["units_done"] for h in hosts.values()) >= 8  # every network's first unit at least
    for h in hosts.values():
        assert h["credit"] == pytest.approx(h["units_done"] * UNIT_CREDIT)
        assert h["rac"] == pytest.approx(h["credit"] * math.log(2) / RAC_HALF_LIFE_DAYS, rel=1e-3)
        assert h["validity_rate"] == 1.0
    assert hosts["w0"]["volunteer_name"] == "Ada" and hosts["w1"]["volunteer_id"] is None
    ada = httpx.get(f"{run.api}/volunteers/{run.account['account_id']}").json()
    assert ada["credit"] == pytest.approx(hosts["w0"]["credit"])
    assert ada["units_done"] == hosts["w0"]["units_done"]
    overview = httpx.get(f"{run.api}/overview").json()
    assert [r["name"] for r in overview["top_hosts"]] == sorted(
        (n for n in hosts if hosts[n]["credit"] > 0), key=lambda n: -hosts[n]["credit"]
    )
    assert (overview["units_ready"], overview["units_in_progress"], overview["units_waiting_validation"]) == (
        0,
        0,
        0,
    )
    # 8 networks x 2 units each; the hosts did more where one replicated the other's unit
    assert sum(h["units_done"] for h in hosts.values()) >= overview["units_done_today"] == 16
    (exp,) = overview["experiments"]
    assert (exp["finished"], exp["target"], exp["fraction"]) == (8, 8, 1.0)
    assert [(m["label"], m["reached"]) for m in exp["milestones"]] == [("SMALL-2", True)]
    detail = httpx.get(f"{run.api}/experiments/small").json()
    assert detail["loss"]["n"] == 8 and sum(detail["loss"]["counts"]) == 8
    assert detail["dataset_final"] and detail["rejections"] == {}


def test_a_registered_worker_relinks_to_the_account_it_is_given(run: Run) -> None:
    other = httpx.post(f"{run.api}/accounts", json={"name": "Bo", "email": "bo@example.org"}).json()
    proc = _worker(run.server, run.tmp, "w1", "--account-key", other["account_key"])
    assert proc.wait(timeout=120) == 0, (run.tmp / "w1.log").read_text()[-2000:]
    assert _hosts(run)["w1"]["volunteer_name"] == "Bo"
    assert httpx.get(f"{run.api}/volunteers/{other['account_id']}").json()["credit"] == 0  # credit stays


# tables sit in .scroll boxes (a safety net); none of them may need it
_NO_HIDDEN_SCROLL = "[...document.querySelectorAll('.scroll')].every(e => e.scrollWidth <= e.clientWidth)"


def _shots(tmp: Path) -> Path:
    folder = Path(os.environ.get("MLC_PAGES_SCREENSHOTS", tmp))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_pages_show_the_apis_numbers_and_fit_narrow_windows(run: Run) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    overview = httpx.get(f"{run.api}/overview").json()
    detail = httpx.get(f"{run.api}/experiments/small").json()
    w0 = _hosts(run)["w0"]
    ada = httpx.get(f"{run.api}/volunteers/{run.account['account_id']}").json()
    expected = {
        "front": ("/", {k.replace("_", "-"): str(overview[k]) for k in (
            "hosts_active", "volunteers_active", "units_ready", "units_in_progress",
            "units_waiting_validation", "units_done_today")}),
        "experiment": ("/experiments/small", {"finished": str(detail["progress"]["finished"]),
                                              "loss-n": str(detail["loss"]["n"])}),
        "host": (f"/hosts/{w0['id']}", {"credit": format_credit(w0["credit"]),
                                         "units-done": str(w0["units_done"]), "trust": w0["trust"]}),
        "volunteer": (f"/volunteers/{ada['id']}", {"credit": format_credit(ada["credit"]),
                                                  "units-done": str(ada["units_done"])}),
    }
    shots = _shots(run.tmp)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            for width in (1280, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
                for name, (path, numbers) in expected.items():
                    assert page.goto(run.server.url + path).status == 200
                    for element, value in numbers.items():
                        assert page.inner_text(f"#{element}").strip() == value, (path, element)
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert wide <= width, f"{path} is {wide} px wide in a {width} px window"
                    assert page.evaluate(_NO_HIDDEN_SCROLL), f"a table of {path} scrolls at {width} px"
                    page.screenshot(path=str(shots / f"pages-{name}-{width}.png"), full_page=True)
                if width == 1280:  # the front page names the leaders and every experiment
                    page.goto(run.server.url + "/")
                    assert "Ada" in page.inner_text("#top-volunteers")
                    assert page.locator(".experiment .milestones li.reached").count() == 1
                    assert page.locator(".experiment .grid div").count() == 4
                assert errors == [], errors
                page.close()
        finally:
            browser.close()
