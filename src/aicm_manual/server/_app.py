"""The collector's HTTP API (docs/collector.md) as a Starlette app.

    app = create_app(storage, configs, pricer)
    uvicorn.run(app, host="127.0.0.1", port=8700)

Every route but the probes needs ``Authorization: Bearer <key>``; the key's tenant scopes
everything the route reads or writes. Storage calls run in the thread pool, so the event
loop never waits on the database.

``POST /track`` checks, prices and answers on the event loop (a few ms of CPU for 500
records) and only waits for the storage in the thread pool, which merges the requests
waiting for it into one transaction. Checking in worker threads instead cost throughput:
each request crossed threads twice more and the workers fought over the GIL.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._configs.model import UsageConfig
from .._protocol import MAX_REQUEST_BYTES
from .._records import check_id
from .._secret import key_digest
from ..errors import AicmError, StorageError
from ._answers import event, key_out, summary, usage_answer
from ._ingest import Ingestor, RequestError, request_time
from ._metrics import Metrics
from ._money_api import Money
from ._pricing import PricerLike
from ._storage.keys import KeyInfo, resolve
from ._storage.protocol import ApiKeyRecord, Storage, SummaryRow
from ._wire import EventList, EventsOfId, Health, KeyList, Revoked

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("aicm_manual.server")
_json = msgspec.json.Encoder()
_TOUCH_EVERY_S = 60.0
STATS_FLUSH_S = 5.0  # ingest-health counters at most this old in the database
_HOUR_US = 3_600_000_000


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(data), status, headers, media_type="application/json")


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"detail": detail}, status, headers)


class Collector:
    """Routes bound to one storage, one set of configs and one pricer."""

    def __init__(
        self, storage: Storage, configs: Sequence[UsageConfig], pricer: PricerLike
    ) -> None:
        self.storage = storage
        self.configs = {c.config_id: c for c in configs}
        self.ingestor = Ingestor(self.configs, pricer, storage)
        self.metrics = Metrics(queue_depth=getattr(storage, "queue_depth", None))
        self.touched: dict[str, float] = {}  # key digest -> when last_used_at was written
        listing = _json.encode({"configs": [c.to_dict() for c in configs]})
        self.listing = (listing, _etag(listing))
        self.one = {c.config_id: (body := _json.encode(c.to_dict()), _etag(body)) for c in configs}
        self.money: Money | None = None  # price rules, budgets, webhooks (create_app sets it)
        # Records by (tenant, hour, status, reason), written every STATS_FLUSH_S seconds.
        self._stats: dict[tuple[str, int, str, str], int] = {}
        self._stats_lock = threading.Lock()
        self._stats_timer: threading.Timer | None = None
        self._stats_final = False

    # -- plumbing ---------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A storage call in the thread pool; any failure of it is a StorageError."""
        try:
            with self.metrics.storage_call():
                return await run_in_threadpool(fn, *args)
        except RequestError:
            raise
        except Exception as exc:
            raise StorageError(f"{getattr(fn, '__name__', 'query')}: {exc}") from exc

    async def _auth(self, request: Request, scope: str) -> ApiKeyRecord | Response:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return error(401, "missing API key (Authorization: Bearer <key>)")
        digest = key_digest(header[7:].strip())
        record: ApiKeyRecord | None = await self._db(self.storage.find_key, digest)
        if record is None:
            return error(401, "unknown API key")
        if scope not in record.scopes and "admin" not in record.scopes:
            return error(403, f"this key lacks the {scope!r} scope")
        now = time.monotonic()
        if now - self.touched.get(digest, -_TOUCH_EVERY_S) >= _TOUCH_EVERY_S:
            # "Last used" for `keys list`, written at most once a minute per key.
            self.touched[digest] = now
            await self._db(self.storage.touch_key, digest)
        return record

    def route(
        self, scope: str, fn: Callable[[Request, ApiKeyRecord], Awaitable[Response]]
    ) -> Handler:
        name = fn.__name__  # a fixed label: paths carry ids, which would grow without end

        async def handler(request: Request) -> Response:
            with self.metrics.timed(name):
                response = await answer(request)
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            return response

        async def answer(request: Request) -> Response:
            try:
                # The key lookup reads the storage too: inside, so an outage is a 503.
                auth = await self._auth(request, scope)
                if isinstance(auth, Response):
                    return auth
                return await fn(request, auth)
            except RequestError as exc:
                return error(exc.status, str(exc))
            except StorageError:  # the database failed: the client retries; we log the cause
                log.exception("aicm collector: %s failed", name)
                return error(503, "storage unavailable, retry later", {"Retry-After": "1"})

        return handler

    # -- configs ----------------------------------------------------------------------------

    async def list_configs(self, request: Request, key: ApiKeyRecord) -> Response:
        return _cached(request, *self.listing)

    async def get_config_schema(self, request: Request, key: ApiKeyRecord) -> Response:
        """The JSON Schema of a config's usage records, in our own rules (bool is not int,
        exact tuple lengths, nullability), for clients in other languages."""
        config = self.configs.get(request.path_params["config_id"])
        if config is None:
            return error(404, f"no config {request.path_params['config_id']!r}")
        return json_response(config.validator.json_schema())

    async def get_config(self, request: Request, key: ApiKeyRecord) -> Response:
        found = self.one.get(request.path_params["config_id"])
        if found is None:
            return error(404, f"config {request.path_params['config_id']!r} not found")
        return _cached(request, *found)

    # -- ingest -----------------------------------------------------------------------------

    async def track(self, request: Request, key: ApiKeyRecord) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
            return error(413, f"body over {MAX_REQUEST_BYTES} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():  # chunked bodies too: stop at the limit
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                return error(413, f"body over {MAX_REQUEST_BYTES} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if request.headers.get("content-encoding") == "gzip":
            # Bounded inflation: a small gzip bomb must not become gigabytes here.
            inflater = zlib.decompressobj(wbits=31)
            try:
                body = inflater.decompress(body, MAX_REQUEST_BYTES + 1)
            except zlib.error:
                return error(400, "body is not valid gzip")
            if len(body) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
                return error(413, f"decompressed body over {MAX_REQUEST_BYTES} bytes")
            # One gzip member, whole, and nothing after it: records past its end would
            # otherwise go unread and unanswered.
            if not inflater.eof:
                return error(400, "gzip body is truncated")
            if inflater.unused_data:
                return error(400, "gzip body has data after its end (one gzip member only)")
        prepared = self.ingestor.prepare(key.tenant, body)
        statuses = await self._db(self.storage.ingest, prepared.events) if prepared.events else []
        if self.money is not None:
            self.money.stored(prepared.events, statuses)
        status, answer = self.ingestor.answer(prepared, statuses)
        self._count(key.tenant, answer)
        unpriced = sum(
            1
            for event, result in zip(prepared.events, statuses, strict=True)
            if event.cost_nanos is None and result == "accepted"
        )
        self.metrics.count_answer(answer["summary"], prepared.size, unpriced)
        return json_response(answer, status)

    def _count(self, tenant: str, answer: dict[str, Any]) -> None:
        hour = (time.time_ns() // 1000) // _HOUR_US * _HOUR_US
        stats = self._stats
        with self._stats_lock:
            for status, n in answer["summary"].items():
                if status != "rejected":  # rejections are counted by reason below
                    stats[(tenant, hour, status, "")] = stats.get((tenant, hour, status, ""), 0) + n
            if "rejected" in answer["summary"]:
                for result in answer["results"]:
                    if result["status"] == "rejected":
                        reason = (result.get("errors") or ["no reason given"])[0][:200]
                        key = (tenant, hour, "rejected", reason)
                        stats[key] = stats.get(key, 0) + 1
            self._schedule_stats_flush()

    def _schedule_stats_flush(self) -> None:
        # Counts reach the database within STATS_FLUSH_S of their request, also when no
        # request follows (an idle collector behind a dashboard someone is reading).
        # Called with _stats_lock held.
        if self._stats_timer is None and not self._stats_final:
            self._stats_timer = threading.Timer(STATS_FLUSH_S, self.flush_stats)
            self._stats_timer.daemon = True
            self._stats_timer.start()

    def flush_stats(self, *, final: bool = False) -> None:
        """Write the counters gathered since the last flush (``final`` at shutdown: no
        later flush is scheduled). A failed write keeps them for the next flush: counting
        never fails a request."""
        with self._stats_lock:
            self._stats_final = self._stats_final or final
            counts, self._stats = self._stats, {}
            if self._stats_timer is not None:
                self._stats_timer.cancel()  # a no-op when this is the timer's own call
                self._stats_timer = None
        if not counts:
            return
        try:
            self.storage.ledger.add_ingest_stats(counts)
        except Exception as exc:  # the storage is down: the records themselves answer 503
            log.warning("aicm collector: ingest counts not written yet: %s", exc)
            with self._stats_lock:
                for key, n in counts.items():
                    self._stats[key] = self._stats.get(key, 0) + n
                self._schedule_stats_flush()  # try again later, off the request path

    # -- queries ----------------------------------------------------------------------------

    async def get_event(self, request: Request, key: ApiKeyRecord) -> Response:
        rid = _id(request.path_params["response_id"], "response_id")
        events = await self._db(self.storage.get_events, key.tenant, rid)
        if not events:
            return error(404, f"no event with response_id {rid!r}")
        return json_response(EventsOfId([event(e) for e in events]))

    async def list_events(self, request: Request, key: ApiKeyRecord) -> Response:
        q = request.query_params
        limit = _int(q.get("limit"), "limit", 100, 1, 1000)
        cursor = _int(q.get("cursor"), "cursor", 0, 0, 2**62) or None
        events = await self._db(
            lambda: self.storage.list_events(
                key.tenant,
                service_id=_id(q.get("service_id"), "service_id"),
                client_customer_key=_id(q.get("client_customer_key"), "client_customer_key"),
                since_us=request_time(q.get("from"), "from"),
                until_us=request_time(q.get("to"), "to"),
                after_id=cursor,
                limit=limit,
            )
        )
        next_cursor = str(events[-1].id) if len(events) == limit else None
        return json_response(EventList([event(e) for e in events], next_cursor))

    async def cost_summary(self, request: Request, key: ApiKeyRecord) -> Response:
        q = request.query_params
        group_by = q.get("group_by", "client_customer_key")
        if group_by not in ("client_customer_key", "service_id"):
            raise RequestError(400, "group_by must be client_customer_key or service_id")
        rows: list[SummaryRow] = await self._db(
            self.storage.cost_summary,
            key.tenant,
            group_by,
            request_time(q.get("from"), "from"),
            request_time(q.get("to"), "to"),
        )
        return json_response(summary(rows, group_by))

    async def usage(self, request: Request, key: ApiKeyRecord) -> Response:
        q = request.query_params
        bucket, group_by = q.get("bucket", "day"), q.get("group_by", "service_id")
        if bucket not in ("hour", "day", "month"):
            raise RequestError(400, "bucket must be hour, day or month")
        if group_by not in ("client_customer_key", "service_id"):
            raise RequestError(400, "group_by must be client_customer_key or service_id")
        rows = await self._db(
            self.storage.usage,
            key.tenant,
            bucket,
            group_by,
            request_time(q.get("from"), "from"),
            request_time(q.get("to"), "to"),
        )
        return json_response(usage_answer(rows, bucket, group_by))

    # -- keys (admin scope; a tenant's own keys only) -------------------------------------

    async def list_keys(self, request: Request, key: ApiKeyRecord) -> Response:
        found: list[KeyInfo] = await self._db(self.storage.list_keys, key.tenant)
        return json_response(KeyList([key_out(k) for k in found]))

    async def revoke_key(self, request: Request, key: ApiKeyRecord) -> Response:
        found: list[KeyInfo] = await self._db(self.storage.list_keys, key.tenant)
        try:
            target = resolve(found, request.path_params["ref"])
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        except LookupError as exc:
            raise RequestError(404, str(exc).strip("'\"")) from None
        if not await self._db(self.storage.revoke_key, target.key_hash, key.tenant):
            raise RequestError(404, f"no key {target.abbreviation}")
        return json_response(Revoked(target.abbreviation))

    # -- probes -----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return json_response(Health("ok"))

    async def readyz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.storage.ping)
        except Exception as exc:  # any failure means "not ready", with the reason
            return error(503, f"storage unavailable: {type(exc).__name__}", {"Retry-After": "1"})
        return json_response(Health("ready"))

    async def metrics_text(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        from ._openapi import OPENAPI

        return json_response(OPENAPI)


def create_app(storage: Storage, configs: Sequence[UsageConfig], pricer: PricerLike) -> Starlette:
    c = Collector(storage, configs, pricer)
    money = c.money = Money(c)
    routes = [
        Route("/api/v1/configs", c.route("read", c.list_configs), methods=["GET"]),
        Route("/api/v1/configs/{config_id}", c.route("read", c.get_config), methods=["GET"]),
        Route(
            "/api/v1/configs/{config_id}/schema",
            c.route("read", c.get_config_schema),
            methods=["GET"],
        ),
        Route("/api/v1/track", c.route("ingest", c.track), methods=["POST"]),
        Route("/api/v1/events", c.route("read", c.list_events), methods=["GET"]),
        # An id may hold "/" (sent as %2F, which the server decodes before routing) and, to
        # be answered 400, any other character: "path" would not match a newline.
        Route(
            "/api/v1/events/{response_id:any_text}", c.route("read", c.get_event), methods=["GET"]
        ),
        Route("/api/v1/costs/summary", c.route("read", c.cost_summary), methods=["GET"]),
        Route("/api/v1/usage", c.route("read", c.usage), methods=["GET"]),
        Route("/api/v1/keys", c.route("admin", c.list_keys), methods=["GET"]),
        Route("/api/v1/keys/{ref}", c.route("admin", c.revoke_key), methods=["DELETE"]),
        *money.routes(),
        Route("/api/v1/openapi.json", c.openapi, methods=["GET"]),
        Route("/healthz", c.healthz, methods=["GET"]),
        Route("/readyz", c.readyz, methods=["GET"]),
        Route("/metrics", c.metrics_text, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: _http_error, 405: _http_error},  # JSON, as every other answer
    )
    app.state.collector = c
    return app


class _AnyText(Convertor[str]):
    """A path parameter of any characters, "/" and newlines included."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", _AnyText())


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    return error(status, str(getattr(exc, "detail", "")) or "error", getattr(exc, "headers", None))


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _cached(request: Request, body: bytes, etag: str) -> Response:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, 200, {"ETag": etag}, media_type="application/json")


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise RequestError(400, f"{name} must be an integer from {low} to {high}")
    return int(text)


def _id(text: str | None, name: str) -> Any:
    """An id given as a parameter, held to the rules of a stored one (400 otherwise)."""
    if text is None:
        return None
    try:
        return check_id(name, text)
    except AicmError as exc:
        raise RequestError(400, str(exc)) from None
