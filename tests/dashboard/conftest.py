"""Fixtures of the dashboard tests (defined in dashboard_support)."""

from dashboard_support import running

__all__ = ["running"]
