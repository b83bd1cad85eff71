"""Client-side spend limits: which customers and services are under an exceeded ``block``
budget, learned in the background so that ``track()`` never waits on the network.

    guard = LimitGuard.shared(api_base, api_key)     # one refresher per (endpoint, key)
    guard.check("acme", "openai::gpt-4o")             # raises UsageLimitExceeded, or not

A daemon thread reads the collector's ``GET /api/v1/budgets`` every ``interval`` seconds
(10 by default) and keeps the exceeded ``block`` budgets with the end of their period. A
check is a lookup in that small list, with no I/O; a block ends on its own when its
period ends, by the caller's clock. So a state seen by the client is at most ``interval``
plus one request old: a budget exceeded meanwhile blocks from the next refresh on, and
records tracked in between are counted and billed as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ._http import HttpClient
from ._secret import Secret
from .errors import AicmError, TransportError, UsageLimitExceeded

log = logging.getLogger("aicm_manual")

DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Block:
    """An exceeded ``block`` budget: whom it covers and until when (epoch seconds)."""

    budget_id: str
    client_customer_key: str | None
    service_id: str | None  # exact, or "vendor::*"
    until: float
    until_text: str

    def covers(self, customer: str | None, service_id: str) -> bool:
        if self.client_customer_key is not None and customer != self.client_customer_key:
            return False
        if self.service_id is None or self.service_id == service_id:
            return True
        return self.service_id.endswith("::*") and service_id.startswith(self.service_id[:-1])


class LimitGuard:
    """The blocks of one (endpoint, key), refreshed by a daemon thread."""

    # One refresher per (endpoint, key) in the process, however many trackers ask.
    _shared: ClassVar[dict[tuple[str, Secret | None], LimitGuard]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        api_base: str,
        api_key: Secret | None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        self.api_base = api_base
        self._api_key = api_key
        self.interval = interval
        self._clock = clock
        self._blocks: tuple[Block, ...] = ()
        self.refreshed_at: float | None = None
        self.last_error: str | None = None
        self._http: HttpClient | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="aicm-limits", daemon=True)
            self._thread.start()

    @classmethod
    def shared(cls, api_base: str, api_key: Secret | None) -> LimitGuard:
        """The process's guard for this endpoint and key (one refresher, however many
        trackers ask)."""
        with cls._shared_lock:
            guard = cls._shared.get((api_base, api_key))
            if guard is None:
                guard = cls._shared[(api_base, api_key)] = cls(api_base, api_key)
            return guard

    def check(self, customer: str | None, service_id: str) -> None:
        """Raise UsageLimitExceeded if a known exceeded block budget covers the record."""
        blocks = self._blocks
        if not blocks:
            return
        now = self._clock()
        for block in blocks:
            if now < block.until and block.covers(customer, service_id):
                who = f"customer {customer!r}, " if customer is not None else ""
                raise UsageLimitExceeded(
                    f"budget {block.budget_id!r} is exceeded for {who}service {service_id!r}"
                    f" until {block.until_text}",
                    block.budget_id,
                    block.until_text,
                )

    def refresh(self) -> None:
        """Read the budgets once (the thread does this every ``interval`` seconds)."""
        if self._http is None:
            self._http = HttpClient(timeout=min(10.0, max(1.0, self.interval)))
        try:
            answer = self._http.request(
                "GET", f"{self.api_base}/api/v1/budgets", api_key=self._api_key
            )
            if answer.status != 200:
                raise TransportError(f"GET /api/v1/budgets answered HTTP {answer.status}")
            self.set_budgets(answer.json().get("budgets", []))
            self.last_error = None
        except (AicmError, AttributeError, TypeError, ValueError) as exc:
            # Keep the last known blocks: an outage must not lift a limit, nor add one.
            if self.last_error != str(exc):
                log.warning("aicm: cannot refresh spend limits (%s); keeping the last known", exc)
            self.last_error = str(exc)

    def set_budgets(self, budgets: list[dict[str, object]]) -> None:
        """Keep the exceeded ``block`` budgets of a ``GET /api/v1/budgets`` answer."""
        blocks = []
        for budget in budgets:
            if budget.get("action") != "block" or budget.get("state") != "exceeded":
                continue
            scope = budget.get("scope")
            scope = scope if isinstance(scope, dict) else {}
            until_text = str(budget.get("period_end", ""))
            blocks.append(
                Block(
                    str(budget.get("budget_id", "")),
                    _text(scope.get("client_customer_key")),
                    _text(scope.get("service_id")),
                    _epoch(until_text),
                    until_text,
                )
            )
        self._blocks = tuple(blocks)
        self.refreshed_at = self._clock()

    def close(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _epoch(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")  # no readable end: blocked until the collector says otherwise
