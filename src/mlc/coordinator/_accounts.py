"""Volunteer accounts: a name, an email and a random account key (only its SHA-256 is stored), and the
hosts linked to them.

The account key is what a volunteer gives each of their workers (`mlc worker --account-key K`): the
host is linked to the account at registration, or relinked later, and its credit from then on counts
for the account too (BOINC's account key works the same way). A key is shown once; its 256 random
bits make a plain SHA-256 a sufficient hash, as for host tokens.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from mlc.coordinator._db import reading, transaction, utcnow
from mlc.coordinator._hosts import token_sha256
from mlc.coordinator._schema import accounts, hosts
from mlc.errors import ConfigError, StateError, UnknownNameError

__all__ = ["Account", "account_by_key", "create_account", "link_host"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    created_at: datetime


def create_account(engine: Engine, name: str, email: str) -> tuple[Account, str]:
    """A new account and its key (returned once; only the hash is kept). One account per email."""
    name, email = name.strip(), email.strip().lower()
    if not name:
        raise ConfigError("an account needs a name (what the project's pages show)")
    if not _EMAIL.match(email):
        raise ConfigError(f"{email!r} is not an email address (name@domain)")
    key = secrets.token_urlsafe(32)
    now = utcnow()
    try:
        with transaction(engine) as conn:
            account_id = conn.execute(
                accounts.insert().values(key_sha256=token_sha256(key), name=name, email=email, created_at=now)
            ).inserted_primary_key[0]
    except IntegrityError:
        raise StateError(
            f"an account with the email {email!r} exists already: use its account key"
        ) from None
    return Account(account_id, name, now), key


def account_by_key(engine: Engine, key: str) -> Account | None:
    with reading(engine) as conn:
        row = conn.execute(
            select(accounts.c.id, accounts.c.name, accounts.c.created_at).where(
                accounts.c.key_sha256 == token_sha256(key)
            )
        ).first()
    return None if row is None else Account(row.id, row.name, row.created_at)


def link_host(engine: Engine, host_id: int, key: str) -> Account:
    """Link host `host_id` to the account whose key is `key` (relinking moves it: credit granted
    from then on counts for the new account; what the old one was granted stays with it)."""
    account = account_by_key(engine, key)
    if account is None:
        raise UnknownNameError("unknown account key: make an account with POST /api/v1/accounts")
    with transaction(engine) as conn:
        conn.execute(hosts.update().where(hosts.c.id == host_id).values(account_id=account.id))
    return account
