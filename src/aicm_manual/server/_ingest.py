"""POST /api/v1/track: check each record, price it, store it once, answer per record.

    ingest = Ingestor(configs, pricer, storage)
    status, answer = ingest.handle("tenant-a", body_bytes)   # 200 or 207 (see _protocol.answer)

A bad record never poisons its batch: it is ``rejected`` with its reasons and the rest are
stored. The answer is built only after ``storage.ingest`` returned, i.e. after the commit.

``handle`` is three steps the app runs apart (so one request's checks overlap another's
write): ``prepare`` (decode, check, price, hash: CPU only), ``storage.ingest`` and
``answer``. A well-formed record takes a fast path (cached per-service lookups, the
client's own timestamp form parsed by slicing); anything else goes through the general
checks, which name every problem. Both build the stored event the same way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .._configs.model import UsageConfig
from .._configs.routing import ambiguous_services, config_for_record, remember
from .._protocol import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES, RECORD_KEYS, answer
from .._records import BAD_ID_CHARACTERS, MAX_ID_LENGTH, check_id, normalise_timestamp
from ..errors import AicmError, ConfigNotFoundError
from ._pricing import PricerLike
from ._storage.protocol import IngestResult, NewEvent, Refused, Storage
from ._timestamps import parse_timestamp

log = logging.getLogger("aicm_manual.server")

_INT64 = 2**63
_encoder = msgspec.json.Encoder(order="sorted")
_Raw = msgspec.Raw


class RequestError(Exception):
    """A whole-request problem: answered with ``status`` and ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def request_time(text: str | None, name: str) -> int | None:
    """A time given in a request (a query parameter or a body field), or 400 naming it."""
    if text is None:
        return None
    try:
        return normalise_timestamp(text)
    except AicmError:
        raise RequestError(
            400, f"{name} must be an RFC 3339 time such as 2026-11-24T00:00:00Z"
        ) from None


def cost_text(nanos: int) -> str:
    """Nano-units as an exact decimal string: 1230 -> "0.000001230"."""
    units, fraction = divmod(abs(nanos), 1_000_000_000)
    return f"{'-' if nanos < 0 else ''}{units}.{fraction:09d}"


# -- what a record's (config_id, service_id) resolves to -----------------------------------


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a service's records go: the config that checks and prices them, if any."""

    config: UsageConfig | None  # None: no config lists the service; stored unpriced
    is_valid: Callable[[object], bool] | None


_NO_CONFIG = _Route(None, None)
_OUR_CONFIGS = "this collector's configs"
_BILLED_HASH = "b:"  # marks a hash of what is billed (earlier hashes cover the whole record)


class Ingestor:
    def __init__(
        self, configs: Mapping[str, UsageConfig], pricer: PricerLike, storage: Storage
    ) -> None:
        self.configs = configs
        self.pricer = pricer
        self.storage = storage
        self.counts: dict[str, int] = {}  # records by status, for /metrics
        self._counting = threading.Lock()  # answers are built on several threads
        self._routes: dict[tuple[str | None, str], _Route | str] = {}
        # For records without a config_id: configs in id order, searched by the client's
        # rule (config_for_service), so both sides file a record alike.
        self._by_id = sorted(configs.values(), key=lambda c: c.config_id)
        for entry, holders, winner in ambiguous_services(self._by_id):
            names = [repr(h) for h in holders]
            log.warning(
                "aicm collector: configs %s and %s %s list %r; records without a config_id"
                " go to %r",
                ", ".join(names[:-1]),
                names[-1],
                "both" if len(names) == 2 else "all",
                entry,
                winner,
            )

    def handle(self, tenant: str, body: bytes) -> tuple[int, dict[str, Any]]:
        prepared = self.prepare(tenant, body)
        # A backend raises StorageError for database trouble: the client retries the request.
        statuses = self.storage.ingest(prepared.events) if prepared.events else []
        return self.answer(prepared, statuses)

    # -- step 1: decode, check, price, hash ----------------------------------------------------

    def prepare(self, tenant: str, body: bytes) -> Prepared:
        if len(body) > MAX_REQUEST_BYTES:
            raise RequestError(413, f"body over {MAX_REQUEST_BYTES} bytes")
        try:
            data = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            raise RequestError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("tracked"), list):
            raise RequestError(400, 'body must be {"tracked": [record, ...]}')
        records: list[Any] = data["tracked"]
        if not records:
            raise RequestError(400, "tracked is empty")
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise RequestError(413, f"at most {MAX_RECORDS_PER_REQUEST} records per request")
        prepared = Prepared(len(records))
        for index, raw in enumerate(records):
            event = self._fast(tenant, raw)
            if event is None:
                event, errors = self._prepare(tenant, raw)
                if event is None:
                    rid = raw.get("response_id") if isinstance(raw, dict) else None
                    prepared.rejected.append(
                        {
                            "index": index,
                            "response_id": rid if isinstance(rid, str) else None,
                            "status": "rejected",
                            "errors": errors,
                        }
                    )
                    continue
            prepared.indexes.append(index)
            prepared.events.append(event)
        return prepared

    def _fast(self, tenant: str, raw: Any) -> NewEvent | None:
        """The event of a well-formed record, or None to take the general path (which
        then finds and names what is wrong, or builds the same event)."""
        if type(raw) is not dict or not raw.keys() <= RECORD_KEYS:
            return None
        service_id = raw.get("service_id")
        response_id = raw.get("response_id")
        usage = raw.get("usage")
        customer = raw.get("client_customer_key")
        context = raw.get("context")
        if not (
            type(service_id) is str
            and type(response_id) is str
            and 0 < len(service_id) <= MAX_ID_LENGTH
            and 0 < len(response_id) <= MAX_ID_LENGTH
            and type(usage) is dict
            and (customer is None or (type(customer) is str and 0 < len(customer) <= MAX_ID_LENGTH))
            and (context is None or type(context) is dict)
        ):
            return None
        bad = BAD_ID_CHARACTERS.search
        if bad(service_id) or bad(response_id) or (customer is not None and bad(customer)):
            return None
        stamp = raw.get("timestamp")
        if type(stamp) is not str:
            return None
        defaulted = raw.get("timestamp_defaulted", False)
        if type(defaulted) is not bool:
            return None
        config_id = raw.get("config_id")
        if config_id is not None and (type(config_id) is not str or bad(config_id)):
            return None
        route = self._routes.get((config_id, service_id)) or self._route(config_id, service_id)
        if isinstance(route, str) or (route.is_valid is not None and not route.is_valid(usage)):
            return None
        try:
            timestamp_us = parse_timestamp(stamp)
        except AicmError:
            return None
        return self._event(
            tenant,
            route,
            config_id,
            service_id,
            response_id,
            timestamp_us,
            usage,
            customer,
            context,
            defaulted,
        )[0]

    def _prepare(self, tenant: str, raw: Any) -> tuple[NewEvent | None, list[str]]:
        """Every check, each problem worded for the sender."""
        if not isinstance(raw, dict):
            return None, ["a record must be a JSON object"]
        errors: list[str] = []
        unknown = sorted(set(raw) - RECORD_KEYS)
        if unknown:
            errors.append(f"unknown record keys {unknown}")
        ids: dict[str, str] = {}
        found_by_service = raw.get("config_id") is None  # optional: the service decides
        for name in ("config_id", "service_id", "response_id"):
            if name == "config_id" and found_by_service:
                continue
            try:
                ids[name] = check_id(name, raw.get(name))
            except AicmError as exc:
                errors.append(str(exc))
        timestamp_us = 0
        try:
            timestamp_us = parse_timestamp(raw.get("timestamp"))
            if raw.get("timestamp") is None:
                errors.append("timestamp is required (RFC 3339, UTC)")
        except AicmError as exc:
            errors.append(str(exc))
        customer = raw.get("client_customer_key")
        if customer is not None:
            try:
                check_id("client_customer_key", customer)
            except AicmError as exc:
                errors.append(str(exc))
        context = raw.get("context")
        if context is not None and not isinstance(context, dict):
            errors.append("context must be an object")
        defaulted = raw.get("timestamp_defaulted", False)
        if not isinstance(defaulted, bool):
            errors.append("timestamp_defaulted must be true or false")
        usage = raw.get("usage")
        route: _Route | str | None = None
        if "service_id" in ids and (found_by_service or "config_id" in ids):
            route = self._route(ids.get("config_id"), ids["service_id"])
        elif "config_id" in ids and self.configs.get(ids["config_id"]) is None:
            errors.append(str(ConfigNotFoundError(ids["config_id"], _OUR_CONFIGS)))
        if isinstance(route, str):
            errors.append(route)
        if isinstance(route, _Route):
            config = route.config
        else:  # a usable config_id with a bad service_id: still check the usage
            config = self.configs.get(ids.get("config_id", ""))
        if config is not None:
            # The compiled check answers for valid payloads; errors only for the others.
            problem = (
                None if config.validator.is_valid(usage) else config.validator.find_errors(usage)
            )
            if problem is not None:
                errors.extend(m for messages in problem.errors.values() for m in messages)
        elif not isinstance(usage, dict):  # no config's schema: any object is stored
            errors.append("usage must be an object")
        if errors:
            return None, errors
        assert isinstance(route, _Route)
        assert isinstance(usage, dict)
        return self._event(
            tenant,
            route,
            ids.get("config_id"),
            ids["service_id"],
            ids["response_id"],
            timestamp_us,
            usage,
            customer,
            context,
            defaulted is True,
        )

    def _route(self, config_id: str | None, service_id: str) -> _Route | str:
        """The route of a (config_id, service_id) pair, or why the pair is rejected; cached.
        A service no config lists is stored without one, unpriced."""
        route: _Route | str
        try:
            config = config_for_record(config_id, service_id, self._named, lambda: self._by_id)
        except ConfigNotFoundError as exc:
            route = str(exc)
        else:
            route = _NO_CONFIG if config is None else _Route(config, config.validator.is_valid)
        return remember(self._routes, (config_id, service_id), route)

    def _named(self, config_id: str) -> UsageConfig:
        config = self.configs.get(config_id)
        if config is None:
            raise ConfigNotFoundError(config_id, _OUR_CONFIGS)
        return config

    def _event(
        self,
        tenant: str,
        route: _Route,
        sent_config_id: str | None,
        service_id: str,
        response_id: str,
        timestamp_us: int,
        usage: dict[str, Any],
        customer: str | None,
        context: dict[str, Any] | None,
        timestamp_defaulted: bool = False,
    ) -> tuple[NewEvent | None, list[str]]:
        config = route.config
        config_id = None if config is None else config.config_id
        # At the record's own time, by the tenant's price rule in force then, else its config.
        pricer = self.pricer
        cost_nanos, currency, source = pricer.quote(
            config_id, service_id, usage, timestamp_us, tenant
        )
        if cost_nanos is None:  # stored unpriced, with the reason the unpriced report shows
            source = pricer.explain(config_id, service_id, usage, timestamp_us, tenant)
        elif not -_INT64 <= cost_nanos < _INT64:
            return None, ["usage values so large that the cost does not fit in 64 bits"]
        if not -_INT64 <= timestamp_us < _INT64:
            return None, ["timestamp out of range"]
        usage_json = _encoder.encode(usage)
        context_json = None if context is None else _encoder.encode(context)
        # NUL is the one character no backend keeps in text: refused in any string or key
        # (JSON escapes it as a backslash and u0000; an escaped backslash before u0000 is none).
        for name, encoded in (("usage", usage_json), ("context", context_json)):
            if encoded is not None and _NUL in encoded and _has_nul(encoded):
                return None, [f"{name} must not contain a NUL character in any string or key"]
        # A record's identity is what it bills: config, service, id, usage, customer, and
        # the timestamp only when the caller gave it. Context is metadata: never a conflict.
        billed = _encoder.encode(
            [
                sent_config_id,
                service_id,
                response_id,
                None if timestamp_defaulted else timestamp_us,
                _Raw(usage_json),
                customer,
            ]
        )
        # Events stored before that rule hash the record as it was sent, context and
        # timestamp included: resending one of them unchanged is still a duplicate.
        as_sent = _encoder.encode(
            [
                sent_config_id,
                service_id,
                response_id,
                timestamp_us,
                _Raw(usage_json),
                customer,
                None if context_json is None else _Raw(context_json),
            ]
        )
        return (
            NewEvent(
                tenant=tenant,
                config_id=config_id,
                service_id=service_id,
                response_id=response_id,
                timestamp_us=timestamp_us,
                client_customer_key=customer,
                usage=usage_json,
                context=context_json,
                payload_hash=_BILLED_HASH + hashlib.sha256(billed).hexdigest(),
                earlier_hash=hashlib.sha256(as_sent).hexdigest(),
                cost_nanos=cost_nanos,
                currency=currency,
                price_source=source,
            ),
            [],
        )

    # -- step 3: the answer, once the storage has committed ------------------------------------

    def answer(
        self, prepared: Prepared, statuses: Sequence[IngestResult]
    ) -> tuple[int, dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for index, event, status in zip(prepared.indexes, prepared.events, statuses, strict=True):
            if isinstance(status, Refused):
                results.append(
                    {
                        "index": index,
                        "response_id": event.response_id,
                        "status": "rejected",
                        "errors": [status.reason],
                    }
                )
                continue
            result: dict[str, Any] = {
                "index": index,
                "response_id": event.response_id,
                "status": status,
            }
            if status == "conflict":
                result["errors"] = ["response_id already stored with a different payload"]
            elif event.cost_nanos is not None:
                result["cost"] = cost_text(event.cost_nanos)
                result["currency"] = event.currency
            results.append(result)
        if prepared.rejected:
            results.extend(prepared.rejected)
            results.sort(key=lambda r: r["index"])
        code, body = answer(results)
        with self._counting:
            for name, n in body["summary"].items():
                self.counts[name] = self.counts.get(name, 0) + n
        return code, body


_NUL = b"\\u0000"


def _has_nul(encoded: bytes) -> bool:
    """Whether JSON text holds an escaped NUL (``\\u0000`` after an even run of backslashes)."""
    start = encoded.find(_NUL)
    while start >= 0:
        slashes = len(encoded[:start]) - len(encoded[:start].rstrip(b"\\"))
        if slashes % 2 == 0:
            return True
        start = encoded.find(_NUL, start + 1)
    return False


class Prepared:
    """One request's records after step 1: the events to store (with their index in the
    request) and the rejected records' results."""

    __slots__ = ("events", "indexes", "rejected", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.events: list[NewEvent] = []
        self.indexes: list[int] = []
        self.rejected: list[dict[str, Any]] = []


def configs_by_id(configs: Sequence[UsageConfig]) -> dict[str, UsageConfig]:
    return {c.config_id: c for c in configs}
