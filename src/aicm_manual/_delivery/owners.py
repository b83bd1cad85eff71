"""Who holds a spool lease: ``host:pid:random`` for each process, and whether it lives.

Rows claimed by a process that died on this host are taken back at once; a process on
another host can only be waited for (its lease expires).
"""

from __future__ import annotations

import os
import socket
import uuid

_HOST = socket.gethostname()


def owner_id() -> str:
    """``host:pid:random``: unique per process, and tells whether the owner still lives."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return True  # another machine's process: only its lease expiry can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
