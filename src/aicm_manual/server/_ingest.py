"""POST /api/v1/track: check each record, price it, store it once, answer per record.

    ingest = Ingestor(configs, pricer, storage)
    status, answer = ingest.handle("tenant-a", body_bytes)   # 200 or 207, DESIGN section 5

A bad record never poisons its batch: it is ``rejected`` with its reasons and the rest are
stored. The answer is built only after ``storage.ingest`` returned, i.e. after the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from .._config import UsageConfig
from .._records import check_id, normalise_timestamp
from ..errors import AicmError, StorageError
from ._storage import NewEvent, Storage

MAX_RECORDS = 1000
_INT64 = 2**63
MAX_BODY_BYTES = 5 * 1024 * 1024
_RECORD_KEYS = frozenset(
    {
        "config_id",
        "service_id",
        "response_id",
        "timestamp",
        "usage",
        "client_customer_key",
        "context",
    }
)
_encoder = msgspec.json.Encoder(order="sorted")


class RequestError(Exception):
    """A whole-request problem: answered with ``status`` and ``{"detail": message}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class PriceLike(Protocol):
    @property
    def cost_nanos(self) -> int | None: ...

    @property
    def currency(self) -> str | None: ...

    @property
    def source(self) -> str | None: ...


class PricerLike(Protocol):
    def price(self, config_id: str, service_id: str, usage: Mapping[str, Any]) -> PriceLike: ...


def cost_text(nanos: int) -> str:
    """Nano-units as an exact decimal string: 1230 -> "0.000001230"."""
    return f"{Decimal(nanos).scaleb(-9):f}"


class Ingestor:
    def __init__(
        self, configs: Mapping[str, UsageConfig], pricer: PricerLike, storage: Storage
    ) -> None:
        self.configs = configs
        self.pricer = pricer
        self.storage = storage
        self.counts: dict[str, int] = {}  # records by status, for /metrics

    def handle(self, tenant: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if len(body) > MAX_BODY_BYTES:
            raise RequestError(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            data = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            raise RequestError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("tracked"), list):
            raise RequestError(400, 'body must be {"tracked": [record, ...]}')
        records: list[Any] = data["tracked"]
        if not records:
            raise RequestError(400, "tracked is empty")
        if len(records) > MAX_RECORDS:
            raise RequestError(413, f"at most {MAX_RECORDS} records per request")
        results: list[dict[str, Any] | None] = [None] * len(records)
        ready: list[tuple[int, NewEvent]] = []
        for index, raw in enumerate(records):
            event, errors = self._prepare(tenant, raw)
            if event is None:
                rid = raw.get("response_id") if isinstance(raw, dict) else None
                results[index] = {
                    "index": index,
                    "response_id": rid if isinstance(rid, str) else None,
                    "status": "rejected",
                    "errors": errors,
                }
            else:
                ready.append((index, event))
        try:
            statuses = self.storage.ingest([e for _, e in ready]) if ready else []
        except Exception as exc:  # database trouble: the client should retry the request
            raise StorageError(f"ingest: {exc}") from exc
        for (index, event), status in zip(ready, statuses, strict=True):
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
            results[index] = result
        final = [r for r in results if r is not None]
        summary: dict[str, int] = {}
        for r in final:
            summary[r["status"]] = summary.get(r["status"], 0) + 1
            self.counts[r["status"]] = self.counts.get(r["status"], 0) + 1
        code = 200 if set(summary) <= {"accepted", "duplicate"} else 207
        return code, {"results": final, "summary": summary}

    def _prepare(self, tenant: str, raw: Any) -> tuple[NewEvent | None, list[str]]:
        if not isinstance(raw, dict):
            return None, ["a record must be a JSON object"]
        errors: list[str] = []
        unknown = sorted(set(raw) - _RECORD_KEYS)
        if unknown:
            errors.append(f"unknown record keys {unknown}")
        ids: dict[str, str] = {}
        for name in ("config_id", "service_id", "response_id"):
            try:
                ids[name] = check_id(name, raw.get(name))
            except AicmError as exc:
                errors.append(str(exc))
        try:
            timestamp_us = normalise_timestamp(raw.get("timestamp"))
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
        usage = raw.get("usage")
        config = self.configs.get(ids.get("config_id", ""))
        if "config_id" in ids and config is None:
            errors.append(f"unknown config_id {ids['config_id']!r}")
        if config is not None and "service_id" in ids:
            if config.find_service(ids["service_id"]) is None:
                errors.append(
                    f"service_id {ids['service_id']!r} is not in config {config.config_id!r}"
                )
            # The compiled check answers for valid payloads; errors only for the others.
            problem = (
                None if config.validator.is_valid(usage) else config.validator.find_errors(usage)
            )
            if problem is not None:
                errors.extend(m for messages in problem.errors.values() for m in messages)
        if errors:
            return None, errors
        assert config is not None
        assert isinstance(usage, dict)
        price = self.pricer.price(ids["config_id"], ids["service_id"], usage)
        if price.cost_nanos is not None and not -_INT64 <= price.cost_nanos < _INT64:
            return None, ["usage values so large that the cost does not fit in 64 bits"]
        if not -_INT64 <= timestamp_us < _INT64:
            return None, ["timestamp out of range"]
        canonical = _encoder.encode(
            [
                ids["config_id"],
                ids["service_id"],
                ids["response_id"],
                timestamp_us,
                usage,
                customer,
                context,
            ]
        )
        return (
            NewEvent(
                tenant=tenant,
                config_id=ids["config_id"],
                service_id=ids["service_id"],
                response_id=ids["response_id"],
                timestamp_us=timestamp_us,
                client_customer_key=customer,
                usage=_encoder.encode(usage),
                context=None if context is None else _encoder.encode(context),
                payload_hash=hashlib.sha256(canonical).hexdigest(),
                cost_nanos=price.cost_nanos,
                currency=price.currency if price.cost_nanos is not None else None,
                price_source=price.source,
            ),
            [],
        )


def configs_by_id(configs: Sequence[UsageConfig]) -> dict[str, UsageConfig]:
    return {c.config_id: c for c in configs}
