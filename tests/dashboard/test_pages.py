"""The dashboard over HTTP without a browser: sign-in, sessions, security, figures, export."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from typing import Any

import pytest
import requests
from dashboard_support import (
    INGEST_ONLY_A,
    KEY_A,
    KEY_B,
    READ_ONLY_A,
    SECRET,
    WEEK,
    Clock,
    Running,
    running_fixture,  # noqa: F401  # the `running` fixture
    serving,
    sign_in,
)
from starlette.applications import Starlette

from aicm_manual._secret import key_digest
from aicm_manual.errors import StorageError
from aicm_manual.server._dashboard import dashboard_routes
from aicm_manual.server._dashboard.session import Sessions
from aicm_manual.server._dashboard.throttle import SignInThrottle

VIEWS = ["", "/customers", "/services", "/events", "/pricing", "/ingest", "/budgets"]


def test_root_redirects_to_the_dashboard(running: Running) -> None:
    """`/` redirects to /dashboard, which sends a visitor without a session to sign in."""
    r = requests.get(running.url + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 307
    assert r.headers["location"] == "/dashboard"
    r = requests.get(running.url + "/dashboard?from=2026-11-01", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?next=%2Fdashboard%3Ffrom%3D2026-11-01"


def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The key buys a signed HttpOnly SameSite=Strict cookie; it is in no header, page or log."""
    caplog.set_level(logging.DEBUG)
    session = requests.Session()
    form = session.get(f"{running.url}/dashboard/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = session.post(
        f"{running.url}/dashboard/login",
        data={"key": READ_ONLY_A, "csrf": csrf, "next": "/dashboard/events"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/events"
    cookie = r.headers["set-cookie"]
    assert "aicm_session=" in cookie
    for flag in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age="):
        assert flag.lower() in cookie.lower()
    assert READ_ONLY_A not in cookie
    assert key_digest(READ_ONLY_A) not in cookie
    page = session.get(f"{running.url}/dashboard", timeout=10)
    assert page.status_code == 200
    assert "tenant-a" in page.text
    assert READ_ONLY_A not in page.text
    assert all(READ_ONLY_A not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("key", "status", "words"),
    [
        ("aicm_not_a_key_at_all", 401, "not known"),
        (INGEST_ONLY_A, 403, "read scope"),
        ("", 400, "Enter a read key"),
    ],
)
def test_sign_in_refuses_unknown_and_unreadable_keys(
    running: Running, key: str, status: int, words: str
) -> None:
    """An unknown key, a key without the read scope or no key gets the form again, no cookie."""
    session = requests.Session()
    form = session.get(f"{running.url}/dashboard/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = session.post(f"{running.url}/dashboard/login", data={"key": key, "csrf": csrf}, timeout=10)
    assert r.status_code == status
    assert words in r.text
    assert "aicm_session" not in r.headers.get("set-cookie", "")
    assert not key or key not in r.text


def test_forms_need_their_csrf_token(running: Running) -> None:
    """Sign-in without the form's token, or from another origin, and sign-out without it fail."""
    r = requests.post(f"{running.url}/dashboard/login", data={"key": KEY_A}, timeout=10)
    assert r.status_code == 403
    assert "aicm_session" not in r.headers.get("set-cookie", "")
    session = requests.Session()
    form = session.get(f"{running.url}/dashboard/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = session.post(
        f"{running.url}/dashboard/login",
        data={"key": KEY_A, "csrf": csrf},
        headers={"Origin": "http://evil.example"},
        timeout=10,
    )
    assert r.status_code == 403
    signed_in = sign_in(running)
    r = signed_in.post(f"{running.url}/dashboard/logout", data={"csrf": "x"}, timeout=10)
    assert r.status_code == 403
    assert signed_in.get(f"{running.url}/dashboard", timeout=10).url.endswith("/dashboard")


def test_sign_out_ends_the_session(running: Running) -> None:
    """After signing out, the browser's cookie is gone and the views ask to sign in again."""
    session = sign_in(running)
    page = session.get(f"{running.url}/dashboard", timeout=10).text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = session.post(
        f"{running.url}/dashboard/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 303
    assert 'aicm_session=""' in r.headers["set-cookie"]
    after = session.get(f"{running.url}/dashboard", allow_redirects=False, timeout=10)
    assert after.status_code == 303
    assert "/dashboard/login" in after.headers["location"]


def test_cookie_refused_when_forged_expired_or_the_key_changed(running: Running) -> None:
    """A cookie is refused when signed by another secret, for a tenant its key is not in,
    after it expires, and once its key loses the read scope or moves to another tenant."""
    sessions = Sessions(SECRET, clock=running.clock)

    def status(cookie: str) -> int:
        r = requests.get(
            f"{running.url}/dashboard",
            cookies={"aicm_session": cookie},
            allow_redirects=False,
            timeout=10,
        )
        return r.status_code

    assert status(sessions.issue("tenant-a", key_digest(KEY_A))) == 200
    assert status(Sessions(b"o" * 48).issue("tenant-a", key_digest(KEY_A))) == 303
    assert status(sessions.issue("tenant-b", key_digest(KEY_A))) == 303  # A's key, B's tenant
    assert status(sessions.issue("tenant-a", key_digest(KEY_A)) + "x") == 303
    old = sessions.issue("tenant-a", key_digest(KEY_A))
    running.clock.now += sessions.lifetime_s + 1
    try:
        assert status(old) == 303
    finally:
        running.clock.now -= sessions.lifetime_s + 1
    moving = "aicm_dashboard_moving_key"
    running.storage.put_key(key_digest(moving), "tenant-a", frozenset({"read"}))
    cookie = sessions.issue("tenant-a", key_digest(moving))
    assert status(cookie) == 200
    running.storage.put_key(key_digest(moving), "tenant-a", frozenset({"ingest"}))
    assert status(cookie) == 303
    # A key is bound to one tenant: moving it means revoking it and binding it again.
    running.storage.revoke_key(key_digest(moving))
    running.storage.put_key(key_digest(moving), "tenant-b", frozenset({"read"}))
    assert status(cookie) == 303


def test_every_view_renders_with_security_headers(running: Running) -> None:
    """Each view answers 200 with a CSP without inline script, nosniff and no framing."""
    session = sign_in(running)
    for view in VIEWS:
        r = session.get(f"{running.url}/dashboard{view}", params=WEEK, timeout=10)
        assert r.status_code == 200, (view, r.text[:500])
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert "<script>" not in r.text.replace('<script type="application/json"', "")


def test_output_is_escaped(running: Running) -> None:
    """A customer key of <script> renders as text, never as markup."""
    session = sign_in(running, KEY_B)
    page = session.get(f"{running.url}/dashboard/customers", params=WEEK, timeout=10).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page


def test_one_tenant_never_sees_another(running: Running) -> None:
    """Tenant A's pages show none of tenant B's customers, and B's none of A's."""
    a = sign_in(running, KEY_A)
    b = sign_in(running, KEY_B)
    for view in ["/customers", "/events"]:
        page_a = a.get(f"{running.url}/dashboard{view}", params=WEEK, timeout=10).text
        page_b = b.get(f"{running.url}/dashboard{view}", params=WEEK, timeout=10).text
        assert "only-in-b" not in page_a
        assert "alert(1)" not in page_a
        assert "only-in-b" in page_b
        assert not any(c in page_b for c in ("acme", "globex", "initech", "umbrella"))


def test_overview_figures_equal_the_api(running: Running) -> None:
    """The overview's total cost is the API's total_cost text for the same window."""
    session = sign_in(running)
    page = session.get(f"{running.url}/dashboard", params=WEEK, timeout=10).text
    summary = running.api(
        "/costs/summary",
        group_by="service_id",
        **{"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"},
    )
    total = summary["total_cost"]
    assert f'data-total-currency="USD">{total}<' in page
    events = sum(row["events"] for row in summary["rows"])
    assert f'id="events">{events}<' in page


def test_bad_window_is_explained(running: Running) -> None:
    """A `from` that is not a time gets a 400 page naming the value."""
    session = sign_in(running)
    r = session.get(f"{running.url}/dashboard", params={"from": "yesterday"}, timeout=10)
    assert r.status_code == 400
    assert "&#39;yesterday&#39;" in r.text


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_download_equals_the_api_events(running: Running, fmt: str) -> None:
    """The CSV / JSON Lines download holds exactly the events /events pages through."""
    session = sign_in(running)
    params = {**WEEK, "service_id": "openai::gpt-4o"}
    r = session.get(f"{running.url}/dashboard/events.{fmt}", params=params, timeout=30)
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    expected, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = running.api(
            "/events",
            service_id="openai::gpt-4o",
            limit="1000",
            **{"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"},
            **extra,
        )
        expected += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(expected) > 100
    if fmt == "jsonl":
        assert [json.loads(line) for line in r.text.splitlines()] == expected
    else:
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["response_id"] for row in rows] == [e["response_id"] for e in expected]
        for row, event in zip(rows, expected, strict=True):
            assert json.loads(row["usage"]) == event["usage"]
            assert row["cost"] == (event["cost"] or "")
            assert row["priced"] == str(event["priced"]).lower()


def test_each_view_with_its_assets_stays_under_200_kb(running: Running) -> None:
    """A view's HTML plus the static files it references weigh under 200 KB."""
    session = sign_in(running)
    for view in [*VIEWS, "/customer?customer=acme"]:
        sep = "&" if "?" in view else "?"
        page = session.get(
            f"{running.url}/dashboard{view}{sep}from=2026-11-01&to=2026-11-08&limit=200",
            timeout=10,
        )
        assets = set(re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', page.text))
        sizes = [len(session.get(running.url + a, timeout=10).content) for a in assets]
        assert len(page.content) + sum(sizes) < 200_000, (view, len(page.content), sizes)


class FailingStorage:
    """The real storage whose summaries fail, as a database that went away would."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def cost_summary(self, *args: Any) -> Any:
        raise StorageError("cost_summary: database is locked")


def test_a_storage_failure_is_a_503_page(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """When the storage fails, the view answers 503 with its headers and logs the cause."""
    app = Starlette(routes=dashboard_routes(FailingStorage(running.storage), secret=SECRET))
    with serving(app) as url:
        session = sign_in(url)
        r = session.get(f"{url}/dashboard", params=WEEK, timeout=10)
    assert r.status_code == 503
    assert "storage is unavailable" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "database is locked" in caplog.text


def test_short_windows_chart_hours(running: Running) -> None:
    """A window of up to three days is drawn in hour buckets, each listed in the table."""
    session = sign_in(running)
    r = session.get(
        f"{running.url}/dashboard", params={"from": "2026-11-02", "to": "2026-11-03"}, timeout=10
    )
    assert r.status_code == 200
    assert "hour buckets" in r.text
    hours = re.findall(r'<th scope="row">2026-11-02T(\d\d):00</th>', r.text)
    assert len(hours) == len(set(hours)) > 12
    data = r.text.split('id="cost-chart-data">', 1)[1].split("</script>", 1)[0]
    assert len(json.loads(data)["x"]) == 24


def test_repeated_refused_keys_are_throttled(running: Running) -> None:
    """After ten refused keys from one address, even a good key waits (429, Retry-After)
    until the five minutes since the first refusal have passed."""
    clock = Clock()
    app = Starlette(routes=dashboard_routes(running.storage, secret=SECRET, clock=clock))
    with serving(app) as url:
        session = requests.Session()
        form = session.get(f"{url}/dashboard/login", timeout=10).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]

        def attempt(key: str) -> requests.Response:
            return session.post(
                f"{url}/dashboard/login",
                data={"key": key, "csrf": csrf},
                allow_redirects=False,
                timeout=10,
            )

        for n in range(10):
            assert attempt(f"aicm_guess_{n:04d}").status_code == 401
        refused = attempt(KEY_A)
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 301
        clock.now += 301
        assert attempt(KEY_A).status_code == 303


def test_the_throttle_forgets_the_oldest_addresses() -> None:
    """The throttle keeps at most max_clients addresses, dropping the oldest first."""
    throttle = SignInThrottle(limit=1, max_clients=2, clock=lambda: 0.0)
    for client in ("a", "b", "c"):
        throttle.failed(client)
    assert throttle.retry_after("a") == 0
    assert throttle.retry_after("b") > 0
    assert throttle.retry_after("c") > 0
