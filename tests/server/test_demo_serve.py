"""``aicm-manual demo --serve`` leaves a collector with its dashboard that a person can
open, signs in with the read key it prints, and stops on Ctrl-C."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from demo_process import demo_serving


def test_demo_serve_prints_the_dashboard_and_a_read_key(tmp_path: Path) -> None:
    """The printed URL serves the sign-in page; the printed key signs in; SIGINT stops it
    with status 0."""
    with demo_serving(tmp_path, 60, "s" * 48) as (url, key):
        session = requests.Session()
        page = session.get(f"{url}/dashboard/login", timeout=10)
        assert page.status_code == 200
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text[:2000]
        signed_in = session.post(
            f"{url}/dashboard/login",
            data={"key": key, "csrf": token.group(1)},
            headers={"Origin": url},
            timeout=10,
        )
        assert signed_in.status_code == 200, signed_in.text[:500]
        assert key not in signed_in.text
