"""The collector's answers as msgspec Structs: encoded by the routes and described by the
OpenAPI document (``_openapi``), which is generated from these very types, so a
schema-driven test checks every answer against what the routes really send.

    json_response(EventList(events=[...], next_cursor=None))

Pure: types only. Fields a route leaves out are ``UNSET`` (absent from the JSON);
``usage`` and ``context`` are passed through as the JSON the storage keeps (``Raw``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Raw, Struct, UnsetType

Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Money = Annotated[str, Meta(pattern=r"^-?[0-9]+\.[0-9]{9}$", description="exact decimal")]
JsonObject = Annotated[Raw, Meta(extra_json_schema={"type": "object"})]
Status = Literal["accepted", "duplicate", "rejected", "conflict"]


class ErrorAnswer(Struct):
    detail: str


class Result(Struct, omit_defaults=True):
    index: int
    response_id: str | None
    status: Status
    errors: list[str] | UnsetType = UNSET
    cost: Money | UnsetType = UNSET
    currency: str | UnsetType = UNSET


class TrackAnswer(Struct):
    results: list[Result]
    summary: dict[Status, int]


class Event(Struct):
    response_id: str
    config_id: str | None
    service_id: str
    timestamp: Time
    received_at: Time
    client_customer_key: str | None
    usage: JsonObject
    context: JsonObject | None
    priced: bool
    cost: Money | None
    currency: str | None
    price_source: str | None
    cursor: str


class EventsOfId(Struct):
    events: list[Event]


class EventList(Struct):
    events: list[Event]
    next_cursor: str | None


class SummaryRow(Struct, omit_defaults=True):
    events: int
    cost: Money | dict[str, Money]  # one currency: a string; several: one per currency
    unpriced: int
    client_customer_key: str | UnsetType | None = UNSET  # the one grouped by is present
    service_id: str | UnsetType | None = UNSET


class Summary(Struct):
    rows: list[SummaryRow]
    total_cost: Money | dict[str, Money]
    currency: str | None


class UsageRow(Struct, omit_defaults=True):
    start: Time
    events: int
    cost: Money
    currency: str | None
    unpriced: int
    client_customer_key: str | UnsetType | None = UNSET  # the one grouped by is present
    service_id: str | UnsetType | None = UNSET


class UsageAnswer(Struct):
    bucket: Literal["hour", "day", "month"]
    group_by: Literal["client_customer_key", "service_id"]
    rows: list[UsageRow]


class ServiceEntry(Struct):
    service_id: str


class Config(Struct):
    config_id: str
    manual_usage_schema: dict[str, str]
    services: list[ServiceEntry]


class ConfigList(Struct):
    configs: list[Config]


class KeyOut(Struct):
    key: Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{8}$")]
    tenant: str
    scopes: list[Literal["admin", "ingest", "read"]]
    created_at: Time
    last_used_at: Time | None


class KeyList(Struct):
    keys: list[KeyOut]


class Revoked(Struct):
    revoked: str


class Health(Struct):
    status: str


ANSWERS = (
    ErrorAnswer,
    TrackAnswer,
    EventsOfId,
    EventList,
    Summary,
    UsageAnswer,
    Config,
    ConfigList,
    KeyList,
    Revoked,
    Health,
)
