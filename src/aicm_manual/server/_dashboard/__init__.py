"""The collector's dashboard: server-rendered pages at ``/dashboard`` for a person holding
a read key, and the events export the CLI shares.

    mount_dashboard(app, storage, secret=load_secret("sqlite:///data/collector.db"))
    export_events(storage, "acme", "csv", since_us, until_us, {}, sys.stdout.buffer)

``web`` holds the routes (Starlette, Jinja2), ``session`` the signed cookies and CSRF
tokens (itsdangerous), ``window`` the pure query-string and money helpers, ``views`` one
module per page reading the storage, ``export`` the CSV / JSON Lines stream. May import
the storage protocol, the collector's pure helpers and the app's event shape; never the
CLI or the client's parts. Jinja2 and itsdangerous come with the ``dashboard`` extra:
without it the collector still runs and ``/dashboard`` says what to install.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .._storage.protocol import Storage
from .export import FORMATS, export_events, iter_export
from .secret import SECRET_ENV, load_secret

INSTALL_HINT = "the dashboard needs its extra: pip install 'aicm-manual[dashboard]'\n"
log = logging.getLogger("aicm_manual.server.dashboard")


def dashboard_routes(
    storage: Storage, *, secret: bytes, lifetime_s: int | None = None, **options: Any
) -> list[BaseRoute]:
    """The routes of ``/dashboard`` (and ``/``'s redirect to it) over ``storage``."""
    try:
        from .web import Dashboard
    except ImportError as exc:  # the extra is missing: say so where the dashboard would be
        log.warning("aicm dashboard: not served (%s)", exc)

        async def missing(request: Request) -> Response:
            return PlainTextResponse(INSTALL_HINT, 501)

        return [Route("/dashboard", missing), Route("/dashboard/{rest:path}", missing)]
    return Dashboard(storage, secret, lifetime_s=lifetime_s, **options).routes()


def mount_dashboard(
    app: Starlette,
    storage: Storage,
    secret: bytes,
    *,
    lifetime_s: int | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Add the dashboard's routes to the collector's app (after its API routes)."""
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    app.router.routes.extend(
        dashboard_routes(storage, secret=secret, lifetime_s=lifetime_s, **options)
    )


__all__ = [
    "FORMATS",
    "SECRET_ENV",
    "dashboard_routes",
    "export_events",
    "iter_export",
    "load_secret",
    "mount_dashboard",
]
