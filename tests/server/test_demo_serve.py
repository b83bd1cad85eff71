"""``aicm-manual demo --serve`` leaves a collector with its dashboard that a person can
open, signs in with the read key it prints, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_demo_serve_prints_the_dashboard_and_a_read_key(tmp_path: Path) -> None:
    """The printed URL serves the sign-in page; the printed key signs in; SIGINT stops it."""
    env = {**os.environ, "AICM_DASHBOARD_SECRET": "s" * 48, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "aicm_manual", "demo", "--serve", "--records", "60"),
            *("--data-dir", str(tmp_path / "demo"), "--schemas", str(ROOT / "schemas")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
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
        session = requests.Session()
        page = session.get(f"{url.group(1)}/dashboard/login", timeout=10)
        assert page.status_code == 200
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text[:2000]
        signed_in = session.post(
            f"{url.group(1)}/dashboard/login",
            data={"key": key.group(1), "csrf": token.group(1)},
            headers={"Origin": url.group(1)},
            timeout=10,
        )
        assert signed_in.status_code == 200, signed_in.text[:500]
        assert key.group(1) not in signed_in.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
