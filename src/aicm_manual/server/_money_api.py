"""The collector's money routes: tenant price rules, the unpriced report, re-pricing,
budgets, limit checks and budget webhooks.

    money = Money(collector)          # loads the price rules into the collector's pricer
    routes = money.routes()           # added to the app beside the record routes

Price rules are read back from the database every ``RULES_RELOAD_S`` seconds, so every
collector process on one database prices with a new rule within that bound (the process
that stored it at once). Budgets count priced spend from the daily rollups; the watcher
and the webhook dispatcher start with the first budget or webhook (or pending message).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._configs.model import parse_pricing
from .._records import format_timestamp_us, normalise_timestamp
from ..errors import AicmError, ConfigError, StorageError
from ._budget_watch import BudgetWatcher
from ._budgets import Budget, BudgetError, parse_budget
from ._ingest import RequestError, cost_text, request_time
from ._pricing import PriceRule
from ._storage.protocol import ApiKeyRecord, NewEvent
from ._storage.repricing import RepriceOverflow, reprice, unpriced_report
from ._webhooks import Dispatcher, WebhookError, parse_webhook

if TYPE_CHECKING:
    from ._app import Collector

RULES_RELOAD_S = 5.0
log = logging.getLogger("aicm_manual.server")
Handler = Callable[[Request, ApiKeyRecord], Coroutine[Any, Any, Response]]


class Money:
    def __init__(self, collector: Collector, *, webhook_networks: tuple[str, ...] = ()) -> None:
        self.c = collector
        self.ledger = collector.storage.ledger
        self.pricer = collector.ingestor.pricer
        self._rules_mark = -1
        self._rules_checked = 0.0
        self._rules_lock = threading.Lock()
        self.load_rules()
        self.watcher = BudgetWatcher(self.ledger)
        self.dispatcher = Dispatcher(self.ledger, self.watcher.endpoint, allowed=webhook_networks)
        self.watcher._wake = self.dispatcher.wake
        self.allowed = webhook_networks
        self._started = False
        if self.ledger.webhooks() or self.ledger.budget_documents():
            self.start()

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.watcher.reload()
            self.watcher.start()
            self.dispatcher.start()

    def stop(self) -> None:
        if self._started:
            self.watcher.stop()
            self.dispatcher.stop()

    def stored(self, events: list[NewEvent], statuses: list[Any]) -> None:
        """After a commit: the newly accepted events, for the budgets they count against."""
        if self._started:
            accepted = zip(events, statuses, strict=True)
            self.watcher.stored(e for e, s in accepted if s == "accepted")
        # Called on the event loop after a commit: the reload check reads the database, so
        # it runs on a thread of its own (one at a time), never delaying or failing the
        # request that has already been stored.
        due = time.monotonic() - self._rules_checked >= RULES_RELOAD_S
        if due and self._rules_lock.acquire(blocking=False):
            self._rules_checked = time.monotonic()
            threading.Thread(
                target=self._reload_if_changed, name="aicm-price-rules", daemon=True
            ).start()

    # -- price rules ---------------------------------------------------------------------------

    def load_rules(self) -> None:
        rows = self.ledger.price_rules()
        rules = []
        for row in rows:
            try:
                pricing = parse_pricing(row.pricing, source=f"price rule {row.rule_id}")
            except ConfigError:
                continue  # accepted by an older version with other rules: skipped, not fatal
            rules.append(
                PriceRule(row.rule_id, row.tenant, row.service_id, row.effective_from_us, pricing)
            )
        set_rules = getattr(self.pricer, "set_rules", None)
        if set_rules is not None:
            set_rules(rules)
        self._rules_mark = max((r.rule_id for r in rows), default=0)
        self._rules_checked = time.monotonic()

    def _reload_if_changed(self) -> None:
        """Reload when another process stored a rule; holds _rules_lock (taken by stored)."""
        try:
            if self.ledger.price_rules_mark() != self._rules_mark:
                self.load_rules()
        except Exception as exc:  # the storage is down: the next check tries again
            log.warning("aicm collector: price rules not reloaded: %s", exc)
        finally:
            self._rules_lock.release()

    async def put_price(self, request: Request, key: ApiKeyRecord) -> Response:
        service_id = _service_id(request.path_params["service_id"])
        body = await _json_body(request)
        effective = body.get("effective_from")
        if not isinstance(effective, str):
            raise RequestError(400, "effective_from must be an RFC 3339 time")
        try:
            effective_us = normalise_timestamp(effective)
            pricing = parse_pricing(body.get("pricing"), source="pricing")
        except AicmError as exc:
            raise RequestError(400, str(exc)) from None
        if set(body) - {"effective_from", "pricing"}:
            unknown = sorted(set(body) - {"effective_from", "pricing"})
            raise RequestError(400, f"unknown keys {unknown}")
        row = await self.c._db(
            self.ledger.add_price_rule, key.tenant, service_id, effective_us, body["pricing"]
        )
        await self.c._db(self.load_rules)
        del pricing  # parsed above only to refuse a bad one before it is stored
        return _json(_rule_view(row), 201)

    async def list_prices(self, request: Request, key: ApiKeyRecord) -> Response:
        rows = await self.c._db(self.ledger.price_rules, key.tenant)
        return _json({"rules": [_rule_view(r) for r in rows]})

    async def unpriced(self, request: Request, key: ApiKeyRecord) -> Response:
        since = _time(request.query_params.get("from"), "from")
        until = _time(request.query_params.get("to"), "to")
        rows = await self.c._db(unpriced_report, self.ledger, key.tenant, since, until)
        return _json(
            {
                "rows": [
                    {
                        "service_id": r.service_id,
                        "events": r.events,
                        "first_seen": format_timestamp_us(r.first_seen_us),
                        "last_seen": format_timestamp_us(r.last_seen_us),
                        "reason": r.reason,
                    }
                    for r in rows
                ]
            }
        )

    async def reprice(self, request: Request, key: ApiKeyRecord) -> Response:
        body = await _json_body(request)
        unknown = set(body) - {"service_id", "from", "to", "only_unpriced"}
        if unknown:
            raise RequestError(400, f"unknown keys {sorted(unknown)}")
        service = body.get("service_id")
        service_id = None if service is None else _service_id(service)
        since = _time(body.get("from"), "from")
        until = _time(body.get("to"), "to")
        only = body.get("only_unpriced", False)
        if not isinstance(only, bool):
            raise RequestError(400, "only_unpriced must be true or false")
        await self.c._db(self.load_rules)
        pricer = self.pricer

        def quote(
            config_id: str | None, service_id: str, usage: dict[str, Any], at: int, tenant: str
        ) -> tuple[int | None, str | None, str]:
            cost, currency, source = pricer.quote(config_id, service_id, usage, at, tenant)
            if cost is None:
                return None, None, pricer.explain(config_id, service_id, usage, at, tenant)
            return cost, currency, source or ""

        try:
            result = await self.c._db(
                reprice, self.ledger, key.tenant, service_id, since, until, only, quote
            )
        except StorageError as exc:
            if isinstance(exc.__cause__, RepriceOverflow):  # the data, not the database
                raise RequestError(409, str(exc.__cause__)) from None
            raise
        return _json(
            {
                "repriced": result.repriced,
                "cost_before": {c: cost_text(n) for c, n in sorted(result.cost_before.items())},
                "cost_after": {c: cost_text(n) for c, n in sorted(result.cost_after.items())},
            }
        )

    # -- budgets -----------------------------------------------------------------------------

    async def put_budget(self, request: Request, key: ApiKeyRecord) -> Response:
        budget_id = request.path_params["budget_id"]
        body = await _json_body(request)
        try:
            budget = parse_budget(budget_id, key.tenant, body)
        except BudgetError as exc:
            raise RequestError(400, str(exc)) from None
        created = await self.c._db(self.ledger.put_budget, key.tenant, budget_id, body)
        self.start()
        await self.c._db(self.watcher.reload)
        view = await self.c._db(self.watcher.view, budget)
        return _json(view, 201 if created else 200)

    async def list_budgets(self, request: Request, key: ApiKeyRecord) -> Response:
        found = await self.c._db(self._budgets, key.tenant, None)
        return _json({"budgets": [view for _, view in found]})

    async def get_budget(self, request: Request, key: ApiKeyRecord) -> Response:
        found = await self.c._db(self._budgets, key.tenant, request.path_params["budget_id"])
        if not found:
            raise RequestError(404, f"no budget {request.path_params['budget_id']!r}")
        return _json(found[0][1])

    async def delete_budget(self, request: Request, key: ApiKeyRecord) -> Response:
        budget_id = request.path_params["budget_id"]
        if not await self.c._db(self.ledger.delete_budget, key.tenant, budget_id):
            raise RequestError(404, f"no budget {budget_id!r}")
        await self.c._db(self.watcher.reload)
        return _json({"deleted": budget_id})

    async def check_limits(self, request: Request, key: ApiKeyRecord) -> Response:
        # The budgets a record with these fields would count against (a budget scoped to a
        # customer or service applies only when that customer or service is named).
        customer = request.query_params.get("client_customer_key")
        service = request.query_params.get("service_id") or ""
        found = await self.c._db(self._budgets, key.tenant, None)
        applying = [view for budget, view in found if budget.applies_to(customer, service)]
        allowed = not any(v["action"] == "block" and v["state"] == "exceeded" for v in applying)
        return _json({"allowed": allowed, "budgets": applying})

    def _budgets(self, tenant: str, budget_id: str | None) -> list[tuple[Budget, dict[str, Any]]]:
        found = []
        for found_tenant, found_id, body in self.ledger.budget_documents(tenant):
            if budget_id is not None and found_id != budget_id:
                continue
            try:
                budget = parse_budget(found_id, found_tenant, body)
            except BudgetError:
                continue  # stored by a version with other rules: not shown, not enforced
            found.append((budget, self.watcher.view(budget)))
        return found

    # -- webhooks ------------------------------------------------------------------------------

    async def put_webhook(self, request: Request, key: ApiKeyRecord) -> Response:
        webhook_id = _service_id(request.path_params["webhook_id"])
        body = await _json_body(request)
        try:
            endpoint = parse_webhook(webhook_id, key.tenant, body, self.allowed)
        except WebhookError as exc:
            raise RequestError(400, str(exc)) from None
        await self.c._db(
            self.ledger.put_webhook,
            key.tenant,
            webhook_id,
            endpoint.url,
            endpoint.secret.reveal(),
            endpoint.events,
        )
        self.start()
        await self.c._db(self.watcher.reload)
        return _json(endpoint.view())

    async def list_webhooks(self, request: Request, key: ApiKeyRecord) -> Response:
        rows = await self.c._db(self.ledger.webhooks, key.tenant)
        shown = [{"webhook_id": r.webhook_id, "url": r.url, "events": list(r.events)} for r in rows]
        return _json({"webhooks": shown})

    async def deliveries(self, request: Request, key: ApiKeyRecord) -> Response:
        webhook_id = request.path_params["webhook_id"]
        messages = await self.c._db(self.ledger.messages_for, key.tenant, webhook_id, 100)
        return _json(
            {
                "deliveries": [
                    {
                        "webhook_id": m.message_id,
                        "created_at": format_timestamp_us(m.created_us),
                        "attempts": m.attempts,
                        "delivered_at": None
                        if m.delivered_us is None
                        else format_timestamp_us(m.delivered_us),
                        "next_attempt_at": None
                        if m.next_attempt_us is None or m.delivered_us is not None
                        else format_timestamp_us(m.next_attempt_us),
                        "last_error": m.last_error,
                        "body": json.loads(m.body),
                    }
                    for m in messages
                ]
            }
        )

    def routes(self) -> list[Route]:
        c = self.c
        return [
            Route("/api/v1/prices", c.route("read", self.list_prices), methods=["GET"]),
            Route(
                "/api/v1/prices/{service_id:path}",
                c.route("admin", self.put_price),
                methods=["PUT"],
            ),
            Route("/api/v1/pricing/unpriced", c.route("read", self.unpriced), methods=["GET"]),
            Route("/api/v1/reprice", c.route("admin", self.reprice), methods=["POST"]),
            Route("/api/v1/budgets", c.route("read", self.list_budgets), methods=["GET"]),
            Route("/api/v1/budgets/{budget_id}", c.route("read", self.get_budget), methods=["GET"]),
            Route(
                "/api/v1/budgets/{budget_id}", c.route("admin", self.put_budget), methods=["PUT"]
            ),
            Route(
                "/api/v1/budgets/{budget_id}",
                c.route("admin", self.delete_budget),
                methods=["DELETE"],
            ),
            Route("/api/v1/limits/check", c.route("read", self.check_limits), methods=["GET"]),
            Route("/api/v1/webhooks", c.route("read", self.list_webhooks), methods=["GET"]),
            Route(
                "/api/v1/webhooks/{webhook_id}",
                c.route("admin", self.put_webhook),
                methods=["PUT"],
            ),
            Route(
                "/api/v1/webhooks/{webhook_id}/deliveries",
                c.route("read", self.deliveries),
                methods=["GET"],
            ),
        ]


def _json(data: Any, status: int = 200) -> Response:
    from ._app import json_response

    return json_response(data, status)


def _rule_view(row: Any) -> dict[str, Any]:
    return {
        "rule_id": row.rule_id,
        "service_id": row.service_id,
        "effective_from": format_timestamp_us(row.effective_from_us),
        "pricing": row.pricing,
        "created_at": format_timestamp_us(row.created_us),
    }


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 1_000_000:
        raise RequestError(413, "body over 1 MB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object")
    return body


def _service_id(text: object) -> str:
    if not isinstance(text, str) or not text or len(text) > 255 or not text.isprintable():
        raise RequestError(400, "an id must be 1-255 printable characters")
    return text


def _time(value: object, name: str) -> int | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(400, f"{name} must be an RFC 3339 time")
    return request_time(value, name)
