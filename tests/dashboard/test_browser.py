"""The dashboard in a real browser (Playwright driving the system's Chromium): sign-in,
every view without console errors, figures equal to the API's, tenants kept apart, the
CSV download, sign-out. Screenshots of this fixture's views go to pytest's temporary folder
(docs/dashboard/ holds the demo's, taken by test_demo_screens.py)."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from dashboard_support import (
    CUSTOMERS_A,
    KEY_A,
    KEY_B,
    WEEK,
    Running,
    running_fixture,  # noqa: F401  # the `running` fixture
)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: a CI run without it must not pass quietly
        pytest.fail("Chromium is missing in CI (.ci/run should install it)", pytrace=False)
    pytest.skip("Chromium is missing (apt-get install chromium)", allow_module_level=True)

API_WEEK = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"}
VIEWS = [
    ("overview", "/dashboard", True),
    ("customers", "/dashboard/customers", False),
    ("customer", "/dashboard/customer?customer=acme&", True),
    ("services", "/dashboard/services", False),
    ("events", "/dashboard/events", False),
    ("pricing", "/dashboard/pricing", False),
    ("ingest", "/dashboard/ingest", False),
    ("budgets", "/dashboard/budgets", False),
]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-shots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class Tab:
    """A page in a fresh browser context that records console errors and page errors."""

    def __init__(self, browser: Any, running: Running, **context: Any) -> None:
        self.context = browser.new_context(accept_downloads=True, **context)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.url = running.url
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str, params: dict[str, str] | None = None) -> Any:
        sep = "" if path.endswith("&") else ("&" if "?" in path else "?")
        target = self.url + path + (sep + urlencode(params) if params else "")
        return self.page.goto(target.rstrip("?&"))

    def sign_in(self, key: str) -> None:
        self.open("/dashboard/login")
        self.page.fill("input[name=key]", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/dashboard")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, running: Running) -> Iterator[Tab]:
    t = Tab(browser, running, viewport={"width": 1280, "height": 900})
    try:
        yield t
    finally:
        t.close()


def test_every_view_renders_without_console_errors(tab: Tab, shots: Path) -> None:
    """Signed in, each view loads with no console error; charts draw a uPlot canvas."""
    tab.sign_in(KEY_A)
    for name, path, has_chart in VIEWS:
        response = tab.open(path, WEEK)
        assert response.status == 200, name
        if has_chart:
            tab.page.wait_for_selector(".uplot canvas", state="attached")
        tab.page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert tab.errors == [], (name, tab.errors)


def test_phone_layout_and_keyboard(browser: Any, running: Running, shots: Path) -> None:
    """On a phone-sized screen the overview does not scroll sideways; Tab reaches the skip
    link first and the navigation by keyboard."""
    t = Tab(browser, running, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        t.sign_in(KEY_A)
        t.open("/dashboard", WEEK)
        t.page.wait_for_selector(".uplot canvas", state="attached")
        overflow = t.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1
        t.page.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
        t.page.keyboard.press("Tab")
        assert t.page.evaluate("document.activeElement.className") == "skip"
        t.page.keyboard.press("Tab")
        assert t.page.evaluate("document.activeElement.textContent") == "Overview"
        assert t.errors == []
    finally:
        t.close()


def test_page_figures_equal_the_api(tab: Tab, running: Running) -> None:
    """The overview's total and events, and each customer's cost, equal /costs/summary's."""
    tab.sign_in(KEY_A)
    tab.open("/dashboard", WEEK)
    by_service = running.api("/costs/summary", group_by="service_id", **API_WEEK)
    shown = tab.page.inner_text("[data-total-currency=USD]")
    assert shown == by_service["total_cost"]
    assert tab.page.inner_text("#events") == str(sum(r["events"] for r in by_service["rows"]))
    unpriced = sum(r["unpriced"] for r in by_service["rows"])
    assert unpriced > 0
    assert tab.page.inner_text("#unpriced") == str(unpriced)
    by_customer = running.api("/costs/summary", group_by="client_customer_key", **API_WEEK)
    assert tab.page.inner_text("#active-customers") == str(len(by_customer["rows"]))
    tab.open("/dashboard/customers", WEEK)
    for row in by_customer["rows"]:
        link = tab.page.locator(f"a[data-customer='{row['client_customer_key']}']")
        cells = link.locator("xpath=ancestor::tr").locator("td")
        assert cells.nth(0).inner_text() == row["cost"]
        assert cells.nth(2).inner_text() == str(row["events"])
    assert tab.errors == []


def test_one_tenant_never_sees_another_in_the_browser(tab: Tab) -> None:
    """Signed in as tenant B, no view shows tenant A's customers; B's `<script>` customer
    is shown as text."""
    tab.sign_in(KEY_B)
    for _, path, _ in VIEWS[:2] + VIEWS[3:5]:
        tab.open(path, WEEK)
        text = tab.page.inner_text("main")
        assert not [c for c in CUSTOMERS_A if c in text], path
    tab.open("/dashboard/customers", WEEK)
    assert tab.page.get_by_text("<script>alert(1)</script>", exact=True).count() == 1
    assert tab.errors == []


def test_csv_download_equals_the_api_events(tab: Tab, running: Running) -> None:
    """The Events view's CSV download, for a filter, holds the events /events gives."""
    tab.sign_in(KEY_A)
    tab.open("/dashboard/events", {**WEEK, "client_customer_key": "globex"})
    with tab.page.expect_download() as info:
        tab.page.click("#download-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    expected: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = running.api(
            "/events", client_customer_key="globex", limit="1000", **API_WEEK, **extra
        )
        expected += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(rows) == len(expected) > 0
    for row, event in zip(rows, expected, strict=True):
        assert row["response_id"] == event["response_id"]
        assert row["client_customer_key"] == "globex"
        assert row["cost"] == (event["cost"] or "")
        assert row["timestamp"] == event["timestamp"]


def test_keyset_paging_walks_every_event(tab: Tab, running: Running) -> None:
    """Following "Next page" from the first page visits each filtered event once."""
    tab.sign_in(KEY_A)
    tab.open("/dashboard/events", {**WEEK, "service_id": "heygen::streaming-avatar"})
    seen: list[str] = []
    while True:
        seen += tab.page.locator("table.events td.id").all_inner_texts()
        nxt = tab.page.locator("#next-page")
        if nxt.count() == 0:
            break
        nxt.click()
        tab.page.wait_for_load_state()
    summary = running.api("/costs/summary", group_by="service_id", **API_WEEK)
    [row] = [r for r in summary["rows"] if r["service_id"] == "heygen::streaming-avatar"]
    assert len(seen) == len(set(seen)) == row["events"]


def test_sign_out_ends_the_session(tab: Tab, shots: Path) -> None:
    """Sign out leads to the sign-in form, and the views then ask to sign in again."""
    tab.sign_in(KEY_A)
    tab.page.click("text=Sign out")
    tab.page.wait_for_url("**/dashboard/login?signed_out=1")
    tab.page.screenshot(path=str(shots / "login.png"))
    assert tab.page.get_by_text("You are signed out.").count() == 1
    tab.open("/dashboard/customers")
    assert "/dashboard/login" in tab.page.url
    assert tab.context.cookies() == [] or all(
        c["name"] != "aicm_session" for c in tab.context.cookies()
    )
