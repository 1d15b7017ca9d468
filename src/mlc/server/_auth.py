"""Who is calling: hosts by their token, the admin by the token in `DIR/admin.token`.

Both travel as `Authorization: Bearer <token>`. A missing or unknown token is 401; a host asking for
what is not its own is 403 (decided by the route, which knows what is asked for).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request, status
from fastapi.security.utils import get_authorization_scheme_param

__all__ = ["bearer_token", "load_or_make_admin_token", "require_admin"]


def bearer_token(request: Request) -> str:
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this call needs a token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def load_or_make_admin_token(path: Path) -> str:
    """The admin token kept in `path` (mode 0600), made at the server's first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def require_admin(request: Request) -> None:
    token = bearer_token(request)
    if not hmac.compare_digest(token.encode(), request.app.state.admin_token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong admin token (see DIR/admin.token)")
