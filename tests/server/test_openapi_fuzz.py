"""Schemathesis fuzzes the collector through its own OpenAPI document, over a real socket.

Every operation in the served ``/api/v1/openapi.json`` gets generated requests, valid
(positive) and invalid (negative) ones, sent with a key that has every scope. No answer
may be a 5xx, and each answer must use a declared status code and content type and, where
the document declares one, match the body schema.

``schemathesis.pytest.from_fixture`` would be the usual way, but its lazy loader sets
pytest's private ``Function._nodeid``, which pytest 9 no longer has; so each operation
runs its own Hypothesis test over ``APIOperation.as_strategy()`` / ``APIOperation.Case``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Ok

from aicm_manual._typestring.nodes import DictOf, ListOf, Scalar, SetOf, TupleOf, TypeNode, UnionOf
from aicm_manual._typestring.parser import parse
from aicm_manual.server._embedded import EmbeddedCollector, embedded_collector
from aicm_manual.server._openapi import OPENAPI

from .live import POSTGRES_URL, pg_url

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "aicm_fuzz_key_123456"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
OPERATIONS = [(method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item]
# Negative cases need something to break: the probes take no parameters and no body.
FUZZ_RUNS = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE
    or OPENAPI["paths"][path][method.lower()].get("parameters")
    or "requestBody" in OPENAPI["paths"][path][method.lower()]
]
QUERY_ROUTES = [
    path
    for path, item in OPENAPI["paths"].items()
    if any(p["in"] == "query" for p in item.get("get", {}).get("parameters", []))
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,  # a failure is reported with its request, not replayed from disk
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedCollector]:
    """One collector per backend for the whole module: fuzzing only needs it to stay up
    and answer; both backends must answer alike."""
    if request.param == "sqlite":
        with embedded_collector(
            f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'c.db'}", SCHEMAS, [f"t:{KEY}"]
        ) as c:
            yield c
        return
    import psycopg
    from psycopg import sql

    schema = f"aicm_fuzz_{uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        with embedded_collector(pg_url(schema), SCHEMAS, [f"t:{KEY}"]) as c:
            yield c
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def api_schema(collector: EmbeddedCollector) -> schemathesis.BaseSchema:
    """The document exactly as the collector serves it."""
    return schemathesis.openapi.from_url(f"{collector.url}/api/v1/openapi.json")


def test_served_document_loads_with_every_operation(
    collector: EmbeddedCollector, api_schema: schemathesis.BaseSchema
) -> None:
    """The served document is OPENAPI, and schemathesis reads every operation in it."""
    served = requests.get(f"{collector.url}/api/v1/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == OPENAPI
    loaded = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        loaded.append((operation.method.upper(), operation.path))
    assert sorted(loaded) == sorted(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), FUZZ_RUNS)
def test_no_server_error_and_answers_conform(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    """Generated requests never get a 5xx and each answer matches what the document declares."""
    operation = api_schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("path", QUERY_ROUTES)
def test_any_query_text_is_answered_below_500(
    api_schema: schemathesis.BaseSchema, path: str
) -> None:
    """Arbitrary text in any query parameter is a declared 2xx/4xx answer, never a 5xx.

    Schemathesis sends integers where integers are declared; a client can send anything,
    e.g. ``limit=²``, which ``str.isdigit`` accepts and ``int`` refuses.
    """
    operation = api_schema[path]["GET"]
    names = [p["name"] for p in OPENAPI["paths"][path]["get"]["parameters"] if p["in"] == "query"]
    texts = st.one_of(st.text(max_size=12), st.sampled_from(["²", "٣", "-1", "+1", " 1", "1e3"]))

    @FUZZ
    @given(query=st.fixed_dictionaries({}, optional=dict.fromkeys(names, texts)))
    @example(query={"limit": "²"} if "limit" in names else {})
    @example(query={"cursor": "²"} if "cursor" in names else {})
    def fuzz(query: dict[str, str]) -> None:
        operation.Case(query=query).call_and_validate(headers=AUTH, checks=CHECKS)

    fuzz()


def _json_values(node: TypeNode) -> st.SearchStrategy[Any]:
    """JSON values of the type ``node`` (sets and tuples travel as arrays)."""
    if isinstance(node, Scalar):
        return {
            "int": st.integers(),
            "float": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
            "str": st.text(max_size=8),
            "bool": st.booleans(),
            "None": st.none(),
            "Any": st.none() | st.integers() | st.text(max_size=4),
        }[node.name]
    if isinstance(node, ListOf | SetOf):
        return st.lists(_json_values(node.item), max_size=3)
    if isinstance(node, DictOf):
        return st.dictionaries(st.text(max_size=6), _json_values(node.value), max_size=3)
    if isinstance(node, TupleOf):
        if node.variadic:
            return st.lists(_json_values(node.items[0]), max_size=3)
        return st.tuples(*map(_json_values, node.items)).map(list)
    assert isinstance(node, UnionOf)
    return st.one_of(*map(_json_values, node.members))


def _usage(schema: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads that pass the config's schema, with numbers of any size and sign."""
    nodes = {name: parse(text) for name, text in schema.items()}
    required = {n: _json_values(t) for n, t in nodes.items() if "None" not in str(t)}
    optional = {n: _json_values(t) for n, t in nodes.items() if "None" in str(t)}
    return st.fixed_dictionaries(required, optional=optional)


@pytest.fixture(scope="module")
def served_configs(collector: EmbeddedCollector) -> list[dict[str, Any]]:
    answer = requests.get(f"{collector.url}/api/v1/configs", headers=AUTH, timeout=10)
    assert answer.status_code == 200
    configs: list[dict[str, Any]] = answer.json()["configs"]
    assert configs
    return configs


def test_valid_records_of_every_served_config_are_answered_below_500(
    api_schema: schemathesis.BaseSchema, served_configs: list[dict[str, Any]]
) -> None:
    """Records that pass their config's schema (so they reach pricing and storage) are
    answered 200/207 per record, never with a 5xx, whatever their numbers are; with or
    without their config_id, and with any model under a "vendor::*" service."""
    operation = api_schema["/api/v1/track"]["POST"]

    @st.composite
    def records(draw: st.DrawFn) -> dict[str, Any]:
        config = draw(st.sampled_from(served_configs))
        service = draw(st.sampled_from(config["services"]))
        when = draw(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)))
        record: dict[str, Any] = {
            "config_id": config["config_id"],
            "service_id": service["service_id"],
            "response_id": draw(st.text("abcdef0123456789", min_size=1, max_size=12)),
            "timestamp": when.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z"),
            "usage": draw(_usage(config["manual_usage_schema"])),
        }
        if record["service_id"].endswith("::*"):
            model = draw(st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku", "no-such-model"]))
            record["service_id"] = record["service_id"][:-1] + model
        if draw(st.booleans()):
            record["client_customer_key"] = draw(st.sampled_from(["acme", "globex"]))
        if draw(st.booleans()):  # the collector finds the config by service_id
            del record["config_id"]
        return record

    @FUZZ
    @given(tracked=st.lists(records(), min_size=1, max_size=4))
    def fuzz(tracked: list[dict[str, Any]]) -> None:
        case = operation.Case(body={"tracked": tracked}, media_type="application/json")
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("depth", [100, 5_000])
def test_deeply_nested_track_body_is_refused_not_a_5xx(
    collector: EmbeddedCollector, depth: int
) -> None:
    """JSON nested past the decoder's recursion limit is a malformed body (400), not a 5xx
    the client would retry forever."""
    nested = b"[" * depth + b"]" * depth
    for body in (nested, b'{"tracked": [{"usage": {"a": ' + nested + b"}}]}"):
        answer = requests.post(
            f"{collector.url}/api/v1/track",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code in (207, 400), (answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/json"
