"""The library's logging: one "aicm_manual" logger, an optional file, redacted bodies.

    configure_logging(Path("/tmp/aicm.log"), "DEBUG")   # idempotent per path
    log.debug("aicm: tracked %s", redacted_body(record.to_wire(), {"email"}))

Bodies are logged only when the user asks (``log_bodies``), and even then values under
secret-looking keys and under the tracker's anonymised fields are replaced.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

log = logging.getLogger("aicm_manual")
REDACTED = "[redacted]"
# "input_tokens" must stay readable, so only whole-word secret names match.
_SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|apikey|secret|password|passwd|authorization|auth[_-]?token|"
    r"access[_-]?token|bearer|credentials?)($|[_-])",
    re.I,
)
_handlers: dict[Path, logging.Handler] = {}
_lock = threading.Lock()


def configure_logging(log_file: Path | None, log_level: str | None) -> None:
    """Send the library's records to ``log_file`` (once per path) at ``log_level``."""
    with _lock:
        if log_level is not None:
            log.setLevel(log_level)
        if log_file is None:
            return
        path = log_file.expanduser().resolve()
        if path not in _handlers:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8", delay=True)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s")
            )
            log.addHandler(handler)
            _handlers[path] = handler


def redacted_body(value: Any, hidden: Collection[str] = ()) -> str:
    """``value`` as JSON, with secret-looking keys and the ``hidden`` keys redacted."""
    return json.dumps(_redact(value, hidden), default=repr, sort_keys=True)


def _redact(value: Any, hidden: Collection[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and (k in hidden or _SECRET_KEY.search(k))
            else _redact(v, hidden)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, hidden) for v in value]
    return value
