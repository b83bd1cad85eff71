"""The dashboard's routes: sign-in and out, the views, the downloads and static assets.

    routes = Dashboard(storage, secret).routes()     # appended to the collector's app

Pages are rendered on the server from Jinja2 templates (autoescaped) in the thread pool,
together with the storage reads. Every response carries the security headers below; the
Content-Security-Policy allows no inline script or style, so the chart's data travels as
a JSON data block and its script is a static file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..._secret import abbreviate, key_digest
from ...errors import StorageError
from .._storage.protocol import ApiKeyRecord, Storage
from . import export
from .session import Claim, Sessions
from .throttle import SignInThrottle
from .views import budgets, customers, events, ingest, overview, pricing, services
from .window import Window, WindowError, parse_window

log = logging.getLogger("aicm_manual.server.dashboard")
SESSION_COOKIE = "aicm_session"
LOGIN_COOKIE = "aicm_login"  # the pre-sign-in CSRF nonce
PATH = "/dashboard"
MAX_FORM_BYTES = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".LICENSE": "text/plain",
}
Build = Callable[[Storage, str, Window, Mapping[str, str]], dict[str, Any]]
# (path, label, build, template): the navigation, in order
VIEWS: list[tuple[str, str, Build, str]] = [
    ("", "Overview", overview.build, overview.TEMPLATE),
    ("/customers", "Customers", customers.build, customers.TEMPLATE),
    ("/services", "Services", services.build, services.TEMPLATE),
    ("/events", "Events", events.build, events.TEMPLATE),
    ("/pricing", "Pricing health", pricing.build, pricing.TEMPLATE),
    ("/ingest", "Ingest health", ingest.build, ingest.TEMPLATE),
    ("/budgets", "Budgets", budgets.build, budgets.TEMPLATE),
]


class Dashboard:
    """The dashboard of one storage, its sessions signed with ``secret``."""

    def __init__(
        self,
        storage: Storage,
        secret: bytes,
        *,
        lifetime_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.clock = clock
        kwargs = {} if lifetime_s is None else {"lifetime_s": lifetime_s}
        self.sessions = Sessions(secret, clock=clock, **kwargs)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader(__package__ or "aicm_manual.server._dashboard"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.static = _load_static()
        self.throttle = SignInThrottle(clock=clock)

    def routes(self) -> list[BaseRoute]:
        Handler = Callable[[Request], Awaitable[Response]]
        table: list[tuple[str, Handler, str]] = [
            ("/", _home, "GET"),
            (PATH + "/", _home, "GET"),
            (PATH + "/login", self.login_form, "GET"),
            (PATH + "/login", self.login, "POST"),
            (PATH + "/logout", self.logout, "POST"),
            *((PATH + p, self._page(build, tpl, p), "GET") for p, _, build, tpl in VIEWS),
            (
                PATH + "/customer",
                self._page(customers.build_customer, customers.CUSTOMER_TEMPLATE, "/customers"),
                "GET",
            ),
            (PATH + "/events.csv", self._download("csv"), "GET"),
            (PATH + "/events.jsonl", self._download("jsonl"), "GET"),
            (PATH + "/static/{name}", self.asset, "GET"),
        ]
        return [Route(path, self._guarded(fn), methods=[method]) for path, fn, method in table]

    def _guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """The handler, answering a page with the security headers when it fails: 503 when
        the storage failed (the cause is logged), 500 for anything else."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except StorageError:
                log.exception("aicm dashboard: %s: storage failed", request.url.path)
                return self._error(request, None, "The storage is unavailable: retry later.", 503)
            except Exception:
                log.exception("aicm dashboard: %s failed", request.url.path)
                return self._error(
                    request, None, "The dashboard failed: see the collector's log.", 500
                )

        return guarded

    # -- sessions ---------------------------------------------------------------------------

    async def claim(self, request: Request) -> Claim | None:
        """The request's session, if its cookie is valid and its key still reads this tenant."""
        claim = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        if claim is None:
            return None
        record: ApiKeyRecord | None = await run_in_threadpool(
            self.storage.find_key, claim.key_digest
        )
        if record is None or record.tenant != claim.tenant or not _reads(record):
            return None
        return claim

    async def login_form(self, request: Request) -> Response:
        if await self.claim(request) is not None:
            return RedirectResponse(_next(request.query_params.get("next")), 303)
        return self._login_page(request, None, 200)

    async def login(self, request: Request) -> Response:
        if not _same_origin(request):
            return self._login_page(request, "This form must be sent from this site.", 403)
        form = await _form(request)
        if form is None:
            return self._login_page(request, "The form was too large or malformed.", 400)
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not self.sessions.csrf_ok(nonce, form.get("csrf")):
            return self._login_page(
                request, "The form expired: please sign in again.", 403, fresh=True
            )
        key = form.get("key", "").strip()
        if not key:
            return self._login_page(request, "Enter a read key.", 400)
        client = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(client)
        if wait:
            response = self._login_page(
                request, f"Too many refused keys: try again in {wait} seconds.", 429
            )
            response.headers["Retry-After"] = str(wait)
            return response
        digest = key_digest(key)
        record: ApiKeyRecord | None = await run_in_threadpool(self.storage.find_key, digest)
        if record is None or not _reads(record):
            self.throttle.failed(client)
            why = "unknown key" if record is None else "no read scope"
            log.warning("aicm dashboard: sign-in refused for %s (%s)", abbreviate(digest), why)
            message = (
                "This key is not known to this collector."
                if record is None
                else "This key cannot read: sign in with a key that has the read scope."
            )
            return self._login_page(request, message, 401 if record is None else 403)
        log.info("aicm dashboard: %s signed in to tenant %r", abbreviate(digest), record.tenant)
        response = RedirectResponse(_next(form.get("next")), 303)
        self._set_cookie(
            request, response, SESSION_COOKIE, self.sessions.issue(record.tenant, digest)
        )
        response.delete_cookie(LOGIN_COOKIE, path=PATH)
        return _secure(response)

    async def logout(self, request: Request) -> Response:
        claim = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        form = await _form(request)
        if claim is not None and (
            not _same_origin(request)
            or form is None
            or not self.sessions.csrf_ok(claim.nonce, form.get("csrf"))
        ):
            return self._error(request, None, "The sign-out form expired: reload the page.", 403)
        response = RedirectResponse(PATH + "/login?signed_out=1", 303)
        response.delete_cookie(SESSION_COOKIE, path=PATH, httponly=True, samesite="strict")
        return _secure(response)

    def _login_page(
        self, request: Request, message: str | None, status: int, *, fresh: bool = False
    ) -> Response:
        nonce = None if fresh else request.cookies.get(LOGIN_COOKIE)
        new_nonce = not nonce
        if not nonce:
            nonce = self.sessions.new_nonce()
        html = self._render(
            "login.html",
            {
                "message": message,
                "signed_out": request.query_params.get("signed_out") == "1",
                "csrf": self.sessions.csrf_token(nonce),
                "next": _next(request.query_params.get("next")),
            },
            None,
        )
        response = Response(html, status, media_type="text/html")
        if new_nonce:
            self._set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
        return _secure(response)

    def _set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        max_age: int | None = None,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=self.sessions.lifetime_s if max_age is None else max_age,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # -- pages ------------------------------------------------------------------------------

    def _page(
        self, build: Build, template: str, nav: str
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            claim = await self.claim(request)
            if claim is None:
                return _to_login(request)
            query = {k: v for k, v in request.query_params.items()}
            chrome = {"active": nav, "path": request.url.path}

            def work() -> tuple[str, int]:
                try:
                    window = parse_window(query, int(self.clock() * 1_000_000))
                    context = build(self.storage, claim.tenant, window, query)
                except WindowError as exc:
                    context = {**chrome, "message": str(exc), "query": query}
                    return self._render("error.html", context, claim), 400
                return self._render(template, {**context, **chrome, "window": window}, claim), 200

            html, status = await run_in_threadpool(work)
            return _secure(Response(html, status, media_type="text/html"), private=True)

        return handler

    def _download(self, fmt: export.Format) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            claim = await self.claim(request)
            if claim is None:
                return _to_login(request)
            query = {k: v for k, v in request.query_params.items()}
            try:
                window = parse_window(query, int(self.clock() * 1_000_000))
            except WindowError as exc:
                return self._error(request, claim, str(exc), 400)
            chunks = export.iter_export(
                self.storage,
                claim.tenant,
                fmt,
                window.since_us,
                window.until_us,
                events.filters(query),
            )
            name = f"events-{claim.tenant}-{window.since}-{window.until}.{fmt}".replace(":", "")
            response = StreamingResponse(
                chunks,
                media_type=export.MEDIA_TYPES[fmt],
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
            return _secure(response, private=True)

        return handler

    async def asset(self, request: Request) -> Response:
        found = self.static.get(request.path_params["name"])
        if found is None:
            return _secure(Response("not found", 404, media_type="text/plain"))
        body, media_type, etag = found
        headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
        if request.headers.get("if-none-match") == etag:
            return _secure(Response(status_code=304, headers=headers))
        return _secure(Response(body, 200, headers, media_type=media_type))

    def _error(self, request: Request, claim: Claim | None, message: str, status: int) -> Response:
        context = {"message": message, "active": "", "path": request.url.path, "query": {}}
        html = self._render("error.html", context, claim)
        return _secure(Response(html, status, media_type="text/html"), private=True)

    def _render(self, template: str, context: dict[str, Any], claim: Claim | None) -> str:
        window = context.get("window")
        chrome = {
            "tenant": None if claim is None else claim.tenant,
            "logout_csrf": None if claim is None else self.sessions.csrf_token(claim.nonce),
            "nav": [(PATH + path, label, path) for path, label, _, _ in VIEWS],
            "window_query": (
                window.query() if isinstance(window, Window) and window.explicit else ""
            ),
        }
        return self.env.get_template(template).render({**chrome, **context})


def _reads(record: ApiKeyRecord) -> bool:
    return "read" in record.scopes or "admin" in record.scopes


async def _home(request: Request) -> Response:
    return RedirectResponse(PATH, 307)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _secure(RedirectResponse(f"{PATH}/login?next={quote(target, safe='')}", 303))


def _next(target: str | None) -> str:
    """Where to go after signing in: only a path of this dashboard, never another site."""
    if not target or not target.startswith(PATH) or "\\" in target or "//" in target:
        return PATH
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return PATH
    return target


def _same_origin(request: Request) -> bool:
    """A browser's Origin header, when it sends one, must name this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host")


async def _form(request: Request) -> dict[str, str] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return {name: values[-1] for name, values in fields.items()}


def _secure(response: Response, *, private: bool = False) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if private or "cache-control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    import hashlib

    files: dict[str, tuple[bytes, str, str]] = {}
    for item in (
        resources.files(__package__ or "aicm_manual.server._dashboard").joinpath("static").iterdir()
    ):
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES and item.is_file():
            body = item.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            files[item.name] = (body, STATIC_TYPES[suffix], etag)
    return files
