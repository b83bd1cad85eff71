"""What both backends answer from their ledger for the dashboard: the unpriced report,
ingest health (records by status and rejection reasons per hour) and the budgets with
their current period's burn."""

from __future__ import annotations

from typing import Any

from .ledger import Ledger
from .repricing import UnpricedRow, unpriced_report


class LedgerReports:
    """Mixed into each backend, which sets ``ledger`` in its constructor."""

    ledger: Ledger

    def unpriced_report(
        self, tenant: str, since_us: int | None, until_us: int | None
    ) -> list[UnpricedRow]:
        return unpriced_report(self.ledger, tenant, since_us, until_us)

    def ingest_counts(
        self, tenant: str, since_us: int | None, until_us: int | None
    ) -> list[dict[str, Any]]:
        return self.ledger.ingest_counts(tenant, since_us, until_us)

    def rejection_reasons(
        self, tenant: str, since_us: int | None, until_us: int | None, limit: int = 10
    ) -> list[dict[str, Any]]:
        return self.ledger.rejection_reasons(tenant, since_us, until_us, limit)

    def budget_statuses(self, tenant: str, now_us: int) -> list[dict[str, Any]]:
        """Each budget of the tenant as the API shows it, spend as of ``now_us``."""
        # The budget rules live with the collector's routes; imported when first asked.
        from .._budget_watch import BudgetWatcher
        from .._budgets import BudgetError, parse_budget

        watcher = BudgetWatcher(self.ledger)
        views = []
        for found_tenant, budget_id, body in self.ledger.budget_documents(tenant):
            try:
                views.append(watcher.view(parse_budget(budget_id, found_tenant, body), now_us))
            except BudgetError:
                continue
        return views
