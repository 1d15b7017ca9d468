"""Volunteer hosts: registration with a random token (only its SHA-256 is stored), look-up by token,
and what each host says it has.

A token is the host's only credential: it is shown once, at registration, and a lost one means
registering again (BOINC's host authenticators work the same way). Hashing makes a leaked database
useless for impersonating hosts; the token's 256 random bits make a plain SHA-256 sufficient.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._schema import hosts, leases

__all__ = ["Host", "authenticate_host", "host_owner", "list_hosts", "register_host", "token_sha256"]

_OWNER_PREFIX = "host:"  # lease owners of volunteer hosts: f"host:{id}"


@dataclass(frozen=True)
class Host:
    id: int
    name: str
    created_at: datetime
    last_seen_at: datetime
    description: dict[str, Any]
    test_queue: bool
    units_leased: int = 0
    trust: str = "new"
    kernel_class: str | None = None  # of its last judged result (None: none judged yet)

    @property
    def owner(self) -> str:
        return host_owner(self.id)


def host_id_of(owner: str | None) -> int | None:
    """The host id in a lease owner or reporter name (`host_owner`'s inverse); None for a local run
    or a Ray task, which no host trained."""
    if not owner or not owner.startswith(_OWNER_PREFIX):
        return None
    return int(owner[len(_OWNER_PREFIX) :])


def host_owner(host_id: int) -> str:
    """The lease owner name of a host: leases, uploads and provenance name it so."""
    return f"{_OWNER_PREFIX}{host_id}"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def register_host(
    engine: Engine,
    name: str,
    description: dict[str, Any],
    test_queue: bool = False,
    account_id: int | None = None,
) -> tuple[Host, str]:
    """A new host and its token (returned once; only the hash is kept), linked to volunteer account
    `account_id` where given."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with transaction(engine) as conn:
        host_id = conn.execute(
            hosts.insert().values(
                token_sha256=token_sha256(token),
                name=name,
                created_at=now,
                last_seen_at=now,
                description_json=json.dumps(description, sort_keys=True),
                test_queue=test_queue,
                account_id=account_id,
                kernel_class=description.get("kernel_class") or None,
            )
        ).inserted_primary_key[0]
    klass = description.get("kernel_class") or None
    return Host(host_id, name, now, now, description, test_queue, kernel_class=klass), token


def authenticate_host(engine: Engine, token: str, description: dict[str, Any] | None = None) -> Host | None:
    """The host whose token this is (its last-seen time and, if given, its description refreshed),
    or None for an unknown token."""
    digest = token_sha256(token)
    with reading(engine) as conn:
        row = conn.execute(select(hosts).where(hosts.c.token_sha256 == digest)).first()
    if row is None:
        return None
    now = utcnow()
    values: dict[str, object] = {"last_seen_at": now}
    klass = row.kernel_class
    if description is not None:
        values["description_json"] = json.dumps(description, sort_keys=True)
        if description.get("kernel_class") and not row.kernel_class:  # a judged result's class wins
            values["kernel_class"] = klass = description["kernel_class"]
    if description is not None or (now - row.last_seen_at).total_seconds() > 60:  # few writes per host
        with transaction(engine) as conn:
            conn.execute(hosts.update().where(hosts.c.id == row.id).values(**values))
    return Host(
        row.id,
        row.name,
        row.created_at,
        now,
        description if description is not None else json.loads(row.description_json),
        bool(row.test_queue),
        trust=row.trust,
        kernel_class=klass,
    )


def list_hosts(engine: Engine) -> list[Host]:
    with reading(engine) as conn:
        counts = dict(conn.execute(select(leases.c.owner, func.count()).group_by(leases.c.owner)).all())
        rows = conn.execute(select(hosts).order_by(hosts.c.id)).all()
    return [
        Host(
            r.id,
            r.name,
            r.created_at,
            r.last_seen_at,
            json.loads(r.description_json),
            bool(r.test_queue),
            counts.get(host_owner(r.id), 0),
            r.trust,
            r.kernel_class,
        )
        for r in rows
    ]
