"""The secret the dashboard signs its session cookies with, from the environment or a
file beside the database.

    secret = load_secret("sqlite:///data/collector.db")

Set ``AICM_DASHBOARD_SECRET`` (32+ characters) for PostgreSQL and for several collector
processes: every process must sign with the same secret. Changing it ends every session.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from ...errors import ConfigError

SECRET_ENV = "AICM_DASHBOARD_SECRET"
SECRET_FILE = "dashboard-secret"
MIN_SECRET_CHARS = 32
log = logging.getLogger("aicm_manual.server.dashboard")


def load_secret(
    database: str, environ: Mapping[str, str] = os.environ, *, secret_file: Path | None = None
) -> bytes:
    """The cookie-signing secret: ``AICM_DASHBOARD_SECRET`` when set (32+ characters),
    else the file ``dashboard-secret`` beside a SQLite database (created once, mode 0600).
    With PostgreSQL and no variable, a random secret for this process (sessions then end
    when it restarts and do not carry to other processes: set the variable)."""
    value = environ.get(SECRET_ENV)
    if value is not None:
        if len(value.strip()) < MIN_SECRET_CHARS:
            raise ConfigError(f"{SECRET_ENV} must have at least {MIN_SECRET_CHARS} characters")
        return value.strip().encode()
    if secret_file is None and database.startswith("sqlite:///"):
        secret_file = Path(database[len("sqlite:///") :]).expanduser().parent / SECRET_FILE
    if secret_file is None:
        log.warning(
            "aicm dashboard: %s is not set; sessions are signed with a secret of this process",
            SECRET_ENV,
        )
        return secrets.token_bytes(32)
    return _secret_from_file(secret_file)


def _secret_from_file(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        try:  # O_EXCL: two processes starting at once keep whichever file came first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _secret_from_file(path)
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
    if len(text) < MIN_SECRET_CHARS:
        raise ConfigError(f"the dashboard secret in {path} must have at least 32 characters")
    return text.encode()
