"""Dashboard benchmark: the overview served over HTTP with many events stored (SQLite),
and the size of every view with its assets.

    .venv/bin/python benchmarks/dashboard.py            # 1,000,000 events, about a minute
    .venv/bin/python benchmarks/dashboard.py --events 100000

Events are written straight to the storage (30 days, 500 customers, 3 services), then an
embedded collector serves the dashboard; a signed-in client asks for the overview of the
default window (the last 30 days) ``--requests`` times. Then headless Chromium (the system's,
driven by Playwright) signs in and opens the overview ``--loads`` times: each load is timed
from the start of navigation to the chart's canvas drawn (uPlot sized it and it holds
painted pixels). Targets are printed with PASS/MISS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from typing import Any

import requests

from aicm_manual.server._embedded import embedded_collector
from aicm_manual.server._storage.protocol import NewEvent
from aicm_manual.server._storage.sqlite import SqliteStorage

KEY = "aicm_dashboard_bench_key_01"
SERVICES = ("openai::gpt-4o-mini", "openai::gpt-4o", "heygen::streaming-avatar")
VIEWS = ("", "/customers", "/services", "/events", "/pricing", "/ingest", "/budgets")


def load(path: str, events: int) -> None:
    storage = SqliteStorage(path)
    now_us = time.time_ns() // 1000
    span = 30 * 86_400_000_000
    usage = json.dumps({"input_tokens": 800, "output_tokens": 90}).encode()
    try:
        for start in range(0, events, 2500):
            storage.ingest(
                [
                    NewEvent(
                        "t",
                        "llm",
                        SERVICES[i % 3],
                        f"e{i}",
                        now_us - 1 - i * (span // events),  # spread over 30 days
                        f"c{i % 500}",
                        usage,
                        None,
                        hashlib.sha256(str(i).encode()).hexdigest(),
                        None if i % 50 == 0 else 1_000 + i % 997,
                        None if i % 50 == 0 else "USD",
                        "no pricing" if i % 50 == 0 else "unit",
                    )
                    for i in range(start, min(events, start + 2500))
                ]
            )
    finally:
        storage.close()


def sign_in(url: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/dashboard/login", timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text[:500]
    answer = session.post(
        f"{url}/dashboard/login",
        data={"key": KEY, "csrf": token.group(1)},
        headers={"Origin": url},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:500]
    return session


def view_bytes(session: requests.Session, url: str, view: str) -> int:
    page = session.get(f"{url}/dashboard{view}", timeout=60)
    total = len(page.content)
    for asset in set(re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text)):
        total += len(session.get(url + asset, timeout=30).content)
    return total


# Navigation start to a drawn chart, read in the page: performance.now() counts from the
# navigation's time origin, so the figure includes the request, parsing and uPlot's drawing.
CHART_DRAWN = """() => {
  const c = document.querySelector('.uplot canvas');
  if (!c || c.width === 0) return null;
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return performance.now();
  return null;
}"""


def chart_draw_times(url: str, loads: int) -> list[float]:
    """Milliseconds from navigation start to a painted chart, per load, in headless Chromium."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{url}/dashboard/login")
            page.fill("input[name=key]", KEY)
            page.click("button[type=submit]")
            page.wait_for_url("**/dashboard")
            for _ in range(loads):
                page.goto(f"{url}/dashboard", wait_until="commit")
                drawn = page.wait_for_function(CHART_DRAWN, polling="raf", timeout=30_000)
                times.append(float(drawn.json_value()))
        finally:
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--loads", type=int, default=20, help="overview loads in Chromium")
    args = parser.parse_args()
    os.environ.setdefault("AICM_DASHBOARD_SECRET", "b" * 48)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/dash.db"
        started = time.perf_counter()
        load(path, args.events)
        print(f"stored {args.events:,} events in {time.perf_counter() - started:.1f} s")
        with embedded_collector(f"sqlite:///{path}", "schemas", [f"t:{KEY}"]) as c:
            session = sign_in(c.url)
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                page = session.get(f"{c.url}/dashboard", timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                assert page.status_code == 200
            times.sort()
            p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
            sizes = {view or "/": view_bytes(session, c.url, view) for view in VIEWS}
            drawn = sorted(chart_draw_times(c.url, args.loads))
    print(
        f"overview served over HTTP: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({args.requests} requests)"
    )
    drawn_p50, drawn_max = statistics.median(drawn), drawn[-1]
    print(
        f"overview chart drawn in Chromium: p50 {drawn_p50:.0f} ms, slowest {drawn_max:.0f} ms"
        f" ({args.loads} loads, from navigation start)"
    )
    print("view + assets (KB): " + ", ".join(f"{v} {n / 1024:.0f}" for v, n in sizes.items()))
    targets: list[tuple[str, Any]] = [
        ("overview p95 < 150 ms", p95 < 150),
        ("every view with its assets < 200 KB", max(sizes.values()) < 200 * 1024),
        ("overview chart drawn within 1 s of navigation (slowest load)", drawn_max < 1000),
    ]
    for label, ok in targets:
        print(f"  {'PASS' if ok else 'MISS'}  {label}")


if __name__ == "__main__":
    main()
