"""``aicm-manual demo --serve`` as a person starts it: a real process, its printed dashboard
URL and read key, and Ctrl-C (SIGINT) to stop it, which must end it with status 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def demo_serving(tmp: Path, records: int, secret: str) -> Iterator[tuple[str, str]]:
    """Yields (base URL, read key) once the demo serves; stops it on leaving."""
    env = {**os.environ, "AICM_DASHBOARD_SECRET": secret, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "aicm_manual", "demo", "--serve", "--records", str(records)),
            *("--data-dir", str(tmp / "demo"), "--schemas", str(ROOT / "schemas")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Serving until Ctrl-C" in line:
                break
        text = "".join(lines)
        url = re.search(r"(http://127\.0\.0\.1:\d+)/dashboard", text)
        key = re.search(r"read key \(shown once\): (\S+)", text)
        assert url is not None, text[-3000:]
        assert key is not None, text[-3000:]
        yield url.group(1), key.group(1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
