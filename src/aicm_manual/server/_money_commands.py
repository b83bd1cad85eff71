"""``aicm-manual prices|unpriced|reprice|budgets|webhooks``: the money verbs, run on the
collector's database directly (a running collector sees price rules within 5 s, budgets
and webhooks within 5 s too).

    aicm-manual prices set openai::* --from 2026-12-01 --genai-prices openai
    aicm-manual prices set internal::search --from 2026-12-01 --unit calls=0.002 --currency EUR
    aicm-manual unpriced --tenant acme
    aicm-manual reprice --tenant acme --only-unpriced
    aicm-manual budgets set acme-daily --customer acme --period day --limit 25 --action block
    aicm-manual webhooks set ops --url https://hooks.example/aicm      # prints a new secret
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from .._configs.model import parse_pricing
from .._configs.sources import DirectoryConfigSource
from .._records import format_timestamp_us, normalise_timestamp
from ..errors import ConfigError
from ._budget_watch import BudgetWatcher
from ._budgets import BudgetError, parse_budget
from ._ingest import cost_text
from ._pricing import Pricer, PriceRule
from ._storage import check_url, open_storage
from ._storage.protocol import Storage
from ._storage.repricing import reprice, unpriced_report
from ._webhooks import WebhookError, new_secret, parse_webhook


def add_money_commands(commands: Any, database: dict[str, Any], fmt: Any) -> None:
    """Add the verbs to the ``aicm-manual`` parser (``database``: the --database option)."""

    def verb(parent: Any, name: str, help_text: str) -> Any:
        parser = parent.add_parser(name, help=help_text, formatter_class=fmt)
        parser.add_argument("--database", **database)
        parser.add_argument("--tenant", default="default", help="whose rules and budgets")
        return parser

    prices = commands.add_parser("prices", help="tenant price rules", formatter_class=fmt)
    price_actions = prices.add_subparsers(dest="price_action", required=True, metavar="ACTION")
    verb(price_actions, "list", "the tenant's price rules, oldest first").set_defaults(
        server_run=_prices_list
    )
    price_set = verb(price_actions, "set", "add a price rule (rules are never edited)")
    price_set.add_argument("service_id", help="a service id, or vendor::* for every model")
    price_set.add_argument("--from", dest="since", required=True, help="when it takes effect")
    price_set.add_argument(
        "--unit", action="append", default=[], metavar="FIELD=PRICE[/PER]",
        help="a price per usage field (repeat for several fields)",
    )  # fmt: skip
    price_set.add_argument("--currency", default="USD", help="currency of unit prices")
    price_set.add_argument(
        "--genai-prices", metavar="PROVIDER[/MODEL]", help="price tokens with genai-prices"
    )
    price_set.set_defaults(server_run=_prices_set)

    unpriced = verb(commands, "unpriced", "unpriced events per service, with the reason")
    unpriced.add_argument("--from", dest="since", help="start of the window (inclusive)")
    unpriced.add_argument("--to", dest="until", help="end of the window (exclusive)")
    unpriced.set_defaults(server_run=_unpriced)

    again = verb(commands, "reprice", "price stored events again under today's rules")
    again.add_argument("--schemas", default="schemas", help="folder of the config files")
    again.add_argument("--service-id", help="only this service")
    again.add_argument("--from", dest="since", help="start of the window (inclusive)")
    again.add_argument("--to", dest="until", help="end of the window (exclusive)")
    again.add_argument("--only-unpriced", action="store_true", help="leave priced events be")
    again.set_defaults(server_run=_reprice)

    budgets = commands.add_parser("budgets", help="spend limits", formatter_class=fmt)
    budget_actions = budgets.add_subparsers(dest="budget_action", required=True, metavar="ACTION")
    verb(budget_actions, "list", "budgets with this period's burn").set_defaults(
        server_run=_budgets_list
    )
    budget_set = verb(budget_actions, "set", "create or replace a budget")
    budget_set.add_argument("budget_id")
    budget_set.add_argument("--customer", help="only this client_customer_key")
    budget_set.add_argument("--service-id", help="only this service (or vendor::*)")
    budget_set.add_argument("--period", choices=("day", "month"), default="month")
    budget_set.add_argument("--limit", required=True, help="a decimal amount")
    budget_set.add_argument("--currency", default="USD")
    budget_set.add_argument(
        "--threshold", type=float, action="append", help="fraction of the limit (repeat)"
    )
    budget_set.add_argument("--action", choices=("alert", "block"), default="alert")
    budget_set.set_defaults(server_run=_budgets_set)
    budget_delete = verb(budget_actions, "delete", "delete a budget")
    budget_delete.add_argument("budget_id")
    budget_delete.set_defaults(server_run=_budgets_delete)

    hooks = commands.add_parser("webhooks", help="budget alert webhooks", formatter_class=fmt)
    hook_actions = hooks.add_subparsers(dest="webhook_action", required=True, metavar="ACTION")
    verb(hook_actions, "list", "the tenant's webhooks (never their secrets)").set_defaults(
        server_run=_webhooks_list
    )
    hook_set = verb(hook_actions, "set", "create or replace a webhook")
    hook_set.add_argument("webhook_id")
    hook_set.add_argument("--url", required=True)
    hook_set.add_argument(
        "--secret", help="whsec_... (default: a new one, printed once)", default=None
    )
    hook_set.set_defaults(server_run=_webhooks_set)


def _open(args: argparse.Namespace) -> Storage:
    check_url(args.database)
    return open_storage(args.database, create=False)


def _time(text: str | None) -> int | None:
    return None if text is None else normalise_timestamp(text)


def _prices_list(args: argparse.Namespace) -> int:
    storage = _open(args)
    try:
        rows = storage.ledger.price_rules(args.tenant)
    finally:
        storage.close()
    table = Table(title=f"Price rules of {args.tenant}")
    for column in ("rule", "service", "from", "pricing", "added"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.rule_id),
            r.service_id,
            format_timestamp_us(r.effective_from_us),
            str(r.pricing),
            format_timestamp_us(r.created_us),
        )
    Console().print(table)
    return 0


def _prices_set(args: argparse.Namespace) -> int:
    if bool(args.unit) == bool(args.genai_prices):
        raise ConfigError("give either --unit FIELD=PRICE (repeatable) or --genai-prices")
    pricing: dict[str, Any]
    if args.genai_prices:
        provider, _, model = args.genai_prices.partition("/")
        ref = {"provider": provider, **({"model": model} if model else {})}
        pricing = {"genai_prices": ref}
    else:
        unit = {}
        for item in args.unit:
            name, sep, price = item.partition("=")
            if not sep:
                raise ConfigError(f"--unit {item!r}: expected FIELD=PRICE or FIELD=PRICE/PER")
            amount, slash, per = price.partition("/")
            unit[name] = {"price": amount, **({"per": int(per)} if slash else {})}
        pricing = {"currency": args.currency, "unit": unit}
    parse_pricing(pricing, source="price rule")
    since = normalise_timestamp(args.since)
    storage = _open(args)
    try:
        row = storage.ledger.add_price_rule(args.tenant, args.service_id, since, pricing)
    finally:
        storage.close()
    Console().print(
        f"rule {row.rule_id}: {args.service_id} from {format_timestamp_us(since)} for"
        f" {args.tenant} (a running collector uses it within 5 s; `aicm-manual reprice`"
        " prices stored events again)"
    )
    return 0


def _unpriced(args: argparse.Namespace) -> int:
    storage = _open(args)
    try:
        rows = unpriced_report(storage.ledger, args.tenant, _time(args.since), _time(args.until))
    finally:
        storage.close()
    table = Table(title=f"Unpriced events of {args.tenant}")
    for column in ("service", "events", "first seen", "last seen", "reason"):
        table.add_column(column, justify="right" if column == "events" else "left")
    for r in rows:
        table.add_row(
            r.service_id,
            str(r.events),
            format_timestamp_us(r.first_seen_us),
            format_timestamp_us(r.last_seen_us),
            r.reason,
        )
    Console().print(table)
    return 0


def _reprice(args: argparse.Namespace) -> int:
    configs = DirectoryConfigSource(args.schemas).all()
    pricer = Pricer(configs)
    storage = _open(args)
    try:
        rules = []
        for row in storage.ledger.price_rules():
            pricing = parse_pricing(row.pricing, source=f"price rule {row.rule_id}")
            rules.append(
                PriceRule(row.rule_id, row.tenant, row.service_id, row.effective_from_us, pricing)
            )
        pricer.set_rules(rules)

        def quote(
            config_id: str | None, service_id: str, usage: dict[str, Any], at: int, tenant: str
        ) -> tuple[int | None, str | None, str]:
            cost, currency, source = pricer.quote(config_id, service_id, usage, at, tenant)
            if cost is None:
                return None, None, pricer.explain(config_id, service_id, usage, at, tenant)
            return cost, currency, source or ""

        result = reprice(
            storage.ledger,
            args.tenant,
            args.service_id,
            _time(args.since),
            _time(args.until),
            args.only_unpriced,
            quote,
        )
    finally:
        storage.close()

    def money(costs: dict[str, int]) -> str:
        return ", ".join(f"{cost_text(n)} {c}" for c, n in sorted(costs.items())) or "-"

    Console().print(
        f"repriced {result.repriced} event(s); cost before {money(result.cost_before)},"
        f" after {money(result.cost_after)}"
    )
    return 0


def _budgets_list(args: argparse.Namespace) -> int:
    storage = _open(args)
    try:
        watcher = BudgetWatcher(storage.ledger)
        views = []
        for tenant, budget_id, body in storage.ledger.budget_documents(args.tenant):
            views.append(watcher.view(parse_budget(budget_id, tenant, body)))
    finally:
        storage.close()
    table = Table(title=f"Budgets of {args.tenant}")
    for column in ("budget", "scope", "period", "spent", "limit", "burn", "state", "action"):
        table.add_column(column)
    for v in views:
        burn = float(v["spent"]) / float(v["limit"]) if float(v["limit"]) else 0.0
        bar = "#" * min(20, int(burn * 20)) + "." * max(0, 20 - int(burn * 20))
        table.add_row(
            v["budget_id"],
            ", ".join(f"{k}={x}" for k, x in v["scope"].items()) or "all",
            f"{v['period']} to {v['period_end'][:10]}",
            f"{v['spent']} {v['currency']}",
            v["limit"],
            f"{bar} {burn:.0%}",
            v["state"],
            v["action"],
        )
    Console().print(table)
    return 0


def _budgets_set(args: argparse.Namespace) -> int:
    scope = {
        k: v
        for k, v in (("client_customer_key", args.customer), ("service_id", args.service_id))
        if v is not None
    }
    body: dict[str, Any] = {
        "scope": scope,
        "period": args.period,
        "limit": args.limit,
        "currency": args.currency,
        "action": args.action,
    }
    if args.threshold:
        body["thresholds"] = args.threshold
    try:
        parse_budget(args.budget_id, args.tenant, body)
    except BudgetError as exc:
        raise ConfigError(str(exc)) from None
    storage = _open(args)
    try:
        created = storage.ledger.put_budget(args.tenant, args.budget_id, body)
    finally:
        storage.close()
    Console().print(f"budget {args.budget_id} {'created' if created else 'replaced'}")
    return 0


def _budgets_delete(args: argparse.Namespace) -> int:
    storage = _open(args)
    try:
        deleted = storage.ledger.delete_budget(args.tenant, args.budget_id)
    finally:
        storage.close()
    if not deleted:
        raise ConfigError(f"no budget {args.budget_id!r} for tenant {args.tenant!r}")
    Console().print(f"budget {args.budget_id} deleted")
    return 0


def _webhooks_list(args: argparse.Namespace) -> int:
    storage = _open(args)
    try:
        rows = storage.ledger.webhooks(args.tenant)
    finally:
        storage.close()
    table = Table(title=f"Webhooks of {args.tenant}")
    for column in ("webhook", "url", "events"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.webhook_id, r.url, ", ".join(r.events))
    Console().print(table)
    return 0


def _webhooks_set(args: argparse.Namespace) -> int:
    secret = args.secret or new_secret()
    try:
        endpoint = parse_webhook(args.webhook_id, args.tenant, {"url": args.url, "secret": secret})
    except WebhookError as exc:
        raise ConfigError(str(exc)) from None
    storage = _open(args)
    try:
        storage.ledger.put_webhook(
            args.tenant, endpoint.webhook_id, endpoint.url, secret, endpoint.events
        )
    finally:
        storage.close()
    console = Console()
    console.print(f"webhook {args.webhook_id} -> {args.url}")
    if args.secret is None:
        console.print(f"signing secret (shown once; verify webhook-signature with it): {secret}")
    return 0
