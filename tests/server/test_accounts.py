"""Volunteer accounts against a real server process: making one, linking hosts to it at registration
and later, and the answers to bad input."""

from __future__ import annotations

import httpx


def test_an_account_key_links_hosts_and_bad_requests_are_refused(server):
    api = f"{server.url}/api/v1"
    made = httpx.post(f"{api}/accounts", json={"name": "Ada", "email": "Ada@Example.org"})
    assert made.status_code == 201
    key = made.json()["account_key"]
    assert len(key) >= 40
    again = httpx.post(f"{api}/accounts", json={"name": "Ada 2", "email": "ada@example.org"})
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    assert httpx.post(f"{api}/accounts", json={"name": "B", "email": "nope"}).status_code == 400
    assert httpx.post(f"{api}/accounts", json={"name": "", "email": "b@example.org"}).status_code == 422

    unknown = httpx.post(f"{api}/hosts", json={"name": "h0", "account_key": "not-a-key"})
    assert unknown.status_code == 404 and "POST /api/v1/accounts" in unknown.json()["detail"]
    with server.admin() as admin:
        assert admin.get("/admin/hosts").json() == []  # an unknown key registers nothing

    host = httpx.post(f"{api}/hosts", json={"name": "h1", "account_key": key}).json()
    account_id = made.json()["account_id"]
    shown = httpx.get(f"{api}/hosts/{host['host_id']}").json()
    assert (shown["volunteer_id"], shown["volunteer_name"], shown["credit"]) == (account_id, "Ada", 0.0)
    volunteer = httpx.get(f"{api}/volunteers/{account_id}").json()
    assert [h["id"] for h in volunteer["hosts"]] == [host["host_id"]]
    assert "email" not in volunteer and "ada@" not in str(volunteer)  # never shown

    other = httpx.post(f"{api}/accounts", json={"name": "Bo", "email": "bo@example.org"}).json()
    auth = {"Authorization": f"Bearer {host['token']}"}
    moved = httpx.put(f"{api}/hosts/me/account", json={"account_key": other["account_key"]}, headers=auth)
    assert moved.status_code == 200 and moved.json()["account_name"] == "Bo"
    assert httpx.get(f"{api}/hosts/{host['host_id']}").json()["volunteer_id"] == other["account_id"]
    assert httpx.get(f"{api}/volunteers/{account_id}").json()["hosts"] == []
    refused = httpx.put(f"{api}/hosts/me/account", json={"account_key": "nope"}, headers=auth)
    assert refused.status_code == 404
    assert httpx.put(f"{api}/hosts/me/account", json={"account_key": key}).status_code == 401
    assert httpx.get(f"{api}/volunteers/99").status_code == 404
    assert httpx.get(f"{server.url}/volunteers/99").status_code == 404


def test_ids_beyond_any_stored_one_are_404_not_500(server):
    """Found by the schemathesis fuzz on PostgreSQL: an id past the 32-bit columns' range was a 500."""
    huge = 69539897975567
    for path in (f"/api/v1/volunteers/{huge}", f"/api/v1/hosts/{huge}", f"/volunteers/{huge}",
                 f"/hosts/{huge}", "/api/v1/hosts/-3", "/hosts/0"):
        answer = httpx.get(f"{server.url}{path}", timeout=30)
        assert answer.status_code == 404, (path, answer.status_code, answer.text[:300])
