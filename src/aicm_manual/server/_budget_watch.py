"""Watching budgets: after records are stored, the budgets they count against are checked
and every threshold reached is written to the webhook outbox, once per period.

    watcher = BudgetWatcher(ledger, wake=dispatcher.wake)
    watcher.stored(accepted_events)        # on the ingest path: a set update, no I/O
    watcher.run_once()                     # the watcher's thread: spend, crossings, outbox

Each (webhook, budget, period, threshold) has one message id, and the outbox keeps a
message id once, so a crossing seen again (a later record, a restart, another collector
process on the same database) is never announced twice. A late record counts in the
period of its own timestamp, and that period's thresholds are what it can cross.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._records import format_timestamp_us
from .._secret import Secret
from ._budgets import Budget, BudgetError, budget_view, parse_budget, period_bounds
from ._ingest import cost_text
from ._storage.ledger import Ledger
from ._storage.protocol import US_PER_DAY, NewEvent
from ._webhooks import Endpoint, Message, message_id, threshold_body

log = logging.getLogger("aicm_manual.server.budgets")

RELOAD_S = 5.0  # how stale another process's budget and webhook changes may be here


class BudgetWatcher:
    def __init__(
        self,
        ledger: Ledger,
        *,
        wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        interval: float = 0.5,
    ) -> None:
        self._ledger = ledger
        self._wake = wake
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._touched: set[tuple[str, str | None, str, int]] = set()  # tenant, customer, svc, day
        self._budgets: dict[str, list[Budget]] = {}
        self._index: dict[str, tuple[dict[str | None, list[Budget]], list[Budget]]] = {}
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        self._loaded_at = -1e18
        self._announced: set[str] = set()  # ids this process wrote (the outbox has them)
        self._stop = threading.Event()
        self._signal = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the ingest path -------------------------------------------------------------------

    def stored(self, events: Iterable[NewEvent]) -> None:
        """Note what newly accepted, priced events touched; the thread does the rest."""
        touched = {
            (e.tenant, e.client_customer_key, e.service_id, e.timestamp_us // US_PER_DAY)
            for e in events
            if e.cost_nanos is not None
        }
        if touched:
            with self._lock:
                self._touched |= touched
            self._signal.set()

    # -- reading budgets -------------------------------------------------------------------

    def reload(self) -> None:
        """Read budgets and webhooks again (also done every RELOAD_S seconds)."""
        budgets: dict[str, list[Budget]] = {}
        for tenant, budget_id, body in self._ledger.budget_documents():
            try:
                budgets.setdefault(tenant, []).append(parse_budget(budget_id, tenant, body))
            except BudgetError as exc:  # stored by an older version with other rules
                log.warning(
                    "aicm collector: budget %r of %r is unusable: %s", budget_id, tenant, exc
                )
        endpoints = {
            (row.tenant, row.webhook_id): Endpoint(
                row.webhook_id, row.tenant, row.url, Secret(row.secret), frozenset(row.events)
            )
            for row in self._ledger.webhooks()
        }
        index: dict[str, tuple[dict[str | None, list[Budget]], list[Budget]]] = {}
        for tenant, found in budgets.items():
            by_customer: dict[str | None, list[Budget]] = {}
            unscoped = []
            for budget in found:
                if budget.client_customer_key is None:
                    unscoped.append(budget)
                else:
                    by_customer.setdefault(budget.client_customer_key, []).append(budget)
            index[tenant] = (by_customer, unscoped)
        self._budgets, self._index, self._endpoints = budgets, index, endpoints
        self._loaded_at = self._clock()

    def endpoint(self, tenant: str, webhook_id: str) -> Endpoint | None:
        """The dispatcher's look-up of where a message goes (None: deleted)."""
        if self._clock() - self._loaded_at > RELOAD_S:
            self.reload()
        return self._endpoints.get((tenant, webhook_id))

    def spent(self, budget: Budget, at_us: int) -> tuple[int, int, int]:
        """(spent, period start, period end) of the budget's period holding ``at_us``."""
        start, end = period_bounds(budget.period, at_us)
        spend = self._ledger.spend(
            budget.tenant,
            budget.client_customer_key,
            budget.service_id,
            start // US_PER_DAY,
            end // US_PER_DAY,
        )
        return spend.get(budget.currency, 0), start, end

    def view(self, budget: Budget, now_us: int | None = None) -> dict[str, Any]:
        """A budget as the API shows it, with the current period's spend."""
        at = int(self._clock() * 1_000_000) if now_us is None else now_us
        spent, start, end = self.spent(budget, at)
        return budget_view(budget, spent, start, end)

    # -- the watcher's thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aicm-budgets", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._signal.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._signal.wait(self._interval)
            self._signal.clear()
            try:
                self.run_once()
            except Exception:  # storage trouble: the touched set is kept and tried again
                log.exception("aicm collector: checking budgets failed")
            # At most one check per interval: a busy collector's records are checked in
            # groups, not one read per request.
            self._stop.wait(self._interval)

    def run_once(self) -> int:
        """Check the budgets the stored events touched; returns the messages written."""
        with self._lock:
            touched, self._touched = self._touched, set()
        if not touched:
            return 0
        try:
            return self._check(touched)
        except BaseException:
            with self._lock:
                self._touched |= touched
            raise

    def _check(self, touched: set[tuple[str, str | None, str, int]]) -> int:
        if self._clock() - self._loaded_at > RELOAD_S:
            self.reload()
        due: set[tuple[Budget, int]] = set()  # (budget, a day in the period to check)
        for tenant, customer, service_id, day in touched:
            # Only the customer's own budgets and the unscoped ones can apply.
            by_customer, unscoped = self._index.get(tenant, ({}, []))
            for budget in (*by_customer.get(customer, ()), *unscoped):
                if budget.applies_to(customer, service_id):
                    start, _ = period_bounds(budget.period, day * US_PER_DAY)
                    due.add((budget, start))
        messages: list[Message] = []
        now_us = int(self._clock() * 1_000_000)
        spend: dict[tuple[str, int, int], dict[str, list[tuple[str, str, int]]]] = {}
        for budget, period_start in sorted(due, key=lambda d: (d[0].budget_id, d[1])):
            start, end = period_bounds(budget.period, period_start)
            index = spend.get((budget.tenant, start, end))
            if index is None:  # one read per tenant and period, for all its budgets
                index = spend[(budget.tenant, start, end)] = {}
                rows = self._ledger.spend_rows(
                    budget.tenant, start // US_PER_DAY, end // US_PER_DAY
                )
                for customer, service, currency, cost in rows:
                    index.setdefault(customer, []).append((service, currency, cost))
            spent = _spent(budget, index)
            hooks = [
                e
                for (tenant, _), e in self._endpoints.items()
                if tenant == budget.tenant and "budget.threshold" in e.events
            ]
            for threshold in budget.reached(spent):
                text = format(threshold.numerator / threshold.denominator, "g")
                body = threshold_body(
                    {
                        "budget_id": budget.budget_id,
                        "threshold": float(threshold),
                        "spent": cost_text(spent),
                        "limit": cost_text(budget.limit_nanos),
                        "currency": budget.currency,
                        "period_start": format_timestamp_us(start),
                        "period_end": format_timestamp_us(end),
                        "scope": budget.scope(),
                    }
                )
                for hook in hooks:
                    mid = message_id(hook.tenant, hook.webhook_id, budget.budget_id, start, text)
                    if mid in self._announced:
                        continue
                    # One microsecond apart, so the outbox sends them in threshold order.
                    created = now_us + len(messages)
                    messages.append(Message(mid, hook.webhook_id, hook.tenant, body, created))
        if messages:
            self._ledger.add_messages(messages)
            if len(self._announced) > 100_000:
                self._announced.clear()
            self._announced.update(m.message_id for m in messages)
            self._wake()
        return len(messages)


def _spent(budget: Budget, by_customer: dict[str, list[tuple[str, str, int]]]) -> int:
    """The budget's spend from one period's (service, currency, cost) rows per customer."""
    if budget.client_customer_key is not None:
        rows = by_customer.get(budget.client_customer_key, [])
    else:
        rows = [row for customer_rows in by_customer.values() for row in customer_rows]
    return sum(
        cost
        for service, currency, cost in rows
        if currency == budget.currency and budget.applies_to(budget.client_customer_key, service)
    )
