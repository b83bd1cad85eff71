"""`import aicm_manual` stays light: no server dependency, no HTTP stack until needed."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "fastapi",
    "starlette",
    "uvicorn",
    "psycopg",
    "psycopg2",
    "sqlalchemy",
    "aicm_manual.server",
    "requests",  # imported only when a config is fetched over HTTP
    "pydantic",
    "pydantic_core",  # imported with the first record encoded or answer read
    "typing_inspect",  # only for schemas written as typing objects
    "asyncio",
]


def test_import_pulls_in_no_server_or_http_dependency() -> None:
    code = (
        "import json, sys; import aicm_manual; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
