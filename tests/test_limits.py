"""Spend limits on the client: exceeded block budgets learned in the background, checked
without I/O, lifted when their period ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aicm_manual import Secret, UsageLimitExceeded
from aicm_manual._limits import LimitGuard

EXCEEDED = {
    "budget_id": "acme-daily",
    "scope": {"client_customer_key": "acme", "service_id": "openai::*"},
    "action": "block",
    "state": "exceeded",
    "period_end": "2026-12-06T00:00:00.000000Z",
}
END = 1796515200.0  # 2026-12-06T00:00:00Z


class Budgets:
    """A loopback collector answering GET /api/v1/budgets (and counting the calls)."""

    def __init__(self) -> None:
        self.budgets: list[dict[str, Any]] = []
        self.status = 200
        self.calls = 0
        self.auth: list[str | None] = []
        self.url = ""


@pytest.fixture
def collector() -> Iterator[Budgets]:
    state = Budgets()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.calls += 1
            state.auth.append(self.headers.get("authorization"))
            body = json.dumps({"budgets": state.budgets}).encode()
            self.send_response(state.status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_exceeded_block_budget_blocks_its_scope_only(collector: Budgets) -> None:
    """Its customer's records for the vendor are refused; other customers and vendors pass."""
    collector.budgets = [EXCEEDED]
    guard = LimitGuard(collector.url, Secret("sk-k"), clock=lambda: END - 60, start=False)
    guard.refresh()
    with pytest.raises(UsageLimitExceeded) as caught:
        guard.check("acme", "openai::gpt-4o")
    assert caught.value.budget_id == "acme-daily"
    assert "2026-12-06" in str(caught.value)
    guard.check("globex", "openai::gpt-4o")
    guard.check("acme", "anthropic::claude-sonnet-4")
    guard.check(None, "openai::gpt-4o")
    assert collector.auth == ["Bearer sk-k"]


def test_a_block_lifts_when_its_period_ends_by_the_callers_clock(collector: Budgets) -> None:
    """At the period's end the record passes again, before any refresh."""
    collector.budgets = [EXCEEDED]
    now = [END - 1]
    guard = LimitGuard(collector.url, None, clock=lambda: now[0], start=False)
    guard.refresh()
    with pytest.raises(UsageLimitExceeded):
        guard.check("acme", "openai::gpt-4o")
    now[0] = END
    guard.check("acme", "openai::gpt-4o")


@pytest.mark.parametrize(
    "change",
    [{"action": "alert"}, {"state": "warning"}, {"state": "ok"}],
)
def test_alert_budgets_and_budgets_not_exceeded_never_block(
    collector: Budgets, change: dict[str, str]
) -> None:
    """Only an exceeded budget whose action is block refuses records."""
    collector.budgets = [{**EXCEEDED, **change}]
    guard = LimitGuard(collector.url, None, clock=lambda: END - 60, start=False)
    guard.refresh()
    guard.check("acme", "openai::gpt-4o")


def test_an_outage_keeps_the_last_known_blocks(collector: Budgets) -> None:
    """A failed refresh neither lifts a limit nor invents one; the error is kept."""
    collector.budgets = [EXCEEDED]
    guard = LimitGuard(collector.url, None, clock=lambda: END - 60, start=False)
    guard.refresh()
    collector.status = 503
    guard.refresh()
    assert guard.last_error is not None
    assert "503" in guard.last_error
    with pytest.raises(UsageLimitExceeded):
        guard.check("acme", "openai::gpt-4o")


def test_the_background_thread_learns_a_new_block(collector: Budgets) -> None:
    """With the thread running, a block appears without any call on the caller's side."""
    guard = LimitGuard(collector.url, None, interval=0.05, clock=lambda: END - 60)
    try:
        collector.budgets = [EXCEEDED]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                guard.check("acme", "openai::gpt-4o")
            except UsageLimitExceeded:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the refresher never learned the block")
    finally:
        guard.close()
