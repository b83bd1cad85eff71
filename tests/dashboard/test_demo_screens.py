"""The dashboard over the demo's own data, in Chromium: ``aicm-manual demo --serve`` runs as
a person would start it, its printed read key signs in, every view renders without a console
error and shows what the demo made (customers, an unpriced service, duplicates, conflicts
and rejections, an exceeded budget). The screenshots in docs/dashboard/ come from here:
``AICM_UPDATE_SCREENSHOTS=1 pytest tests/dashboard/test_demo_screens.py`` rewrites them;
other runs keep theirs in a temporary folder, so a test run leaves the tree as it was."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo_process import ROOT, demo_serving

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: a CI run without it must not pass quietly
        pytest.fail("Chromium is missing in CI (.ci/run should install it)", pytrace=False)
    pytest.skip("Chromium is missing (apt-get install chromium)", allow_module_level=True)

DOCS_SHOTS = ROOT / "docs" / "dashboard"
# (screenshot name, path, text the view must show from the demo's data)
VIEWS = [
    ("overview", "/dashboard", "Cost over time"),
    ("customers", "/dashboard/customers", "umbrella"),
    ("customer", "/dashboard/customer?customer=acme", "acme"),
    ("services", "/dashboard/services", "heygen::streaming-avatar"),
    ("events", "/dashboard/events", "openai::gpt-4o"),
    ("pricing", "/dashboard/pricing", "internal::search"),
    ("ingest", "/dashboard/ingest", "input_tokens: expected int, got str"),
    ("budgets", "/dashboard/budgets", "heygen-daily"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The demo serving its dashboard: (base URL, the read key it printed)."""
    with demo_serving(tmp_path_factory.mktemp("demo"), 1500, "d" * 48) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("AICM_UPDATE_SCREENSHOTS"):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SHOTS
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _signed_in(
    browser: Any, url: str, key: str, shots: Path, **context: Any
) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/dashboard/login")
    page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    return ctx, page, errors


def test_every_view_of_the_demo(browser: Any, demo: tuple[str, str], shots: Path) -> None:
    """Each view shows the demo's data with no console error; charts draw; screenshots of
    each view (and the overview on a phone) are taken."""
    url, key = demo
    ctx, page, errors = _signed_in(
        browser, url, key, shots, viewport={"width": 1280, "height": 900}
    )
    try:
        for name, path, expected in VIEWS:
            # The ingest counts reach the database every few seconds: wait for them.
            deadline = time.monotonic() + 30
            while True:
                response = page.goto(url + path)
                assert response.status == 200, name
                if expected in page.inner_text("main") or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert expected in page.inner_text("main"), (name, expected)
            if page.locator("[data-chart]").count():
                page.wait_for_selector(".uplot canvas", state="attached")
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert key not in page.content()
        assert errors == []
    finally:
        ctx.close()
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True}
    ctx, page, errors = _signed_in(browser, url, key, shots, **phone)
    try:
        page.wait_for_selector(".uplot canvas", state="attached")
        page.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
        assert errors == []
    finally:
        ctx.close()
