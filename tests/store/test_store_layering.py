"""The store is a science layer: it must not pull in databases or a web stack."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "fastapi", "httpx", "uvicorn", "starlette", "mlc.coordinator",
             "mlc.server")


def test_store_imports_no_database_or_web_stack() -> None:
    code = ("import sys, mlc.dataset, mlc.store; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
            f"or m in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
