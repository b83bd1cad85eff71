"""A storage outage is 503 + Retry-After on every route (the key lookup
included), and a NUL in a query or path parameter is the client's error (400), not 503.

The outage is real: the collector reaches PostgreSQL through a TCP proxy, which is then
shut, so the database is unreachable (connections refused, open ones cut).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from .live import HTTP_TIMEOUT, Api, TcpProxy, collector, pg_url, record

ROUTES = [
    ("GET", "/api/v1/configs"),
    ("GET", "/api/v1/configs/heygen"),
    ("POST", "/api/v1/track"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/some-id"),
    ("GET", "/api/v1/costs/summary"),
    ("GET", "/api/v1/usage"),
]


@pytest.fixture
def down(postgres_url: str, pg_schema: str) -> Iterator[tuple[Api, TcpProxy]]:
    """A collector on PostgreSQL behind a proxy that the test can shut."""
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    through = postgres_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
    try:
        with collector(pg_url(pg_schema, through)) as api:
            yield api, proxy
    finally:
        proxy.stop()


def test_every_keyed_route_answers_503_with_retry_after_while_the_database_is_down(
    down: tuple[Api, TcpProxy],
) -> None:
    """With the database unreachable, every route behind a key answers 503 with a
    Retry-After header (the key cannot be checked, so the route cannot answer)."""
    api, proxy = down
    assert api.track([record("before-outage")]).status_code == 200  # the proxy works
    proxy.stop()
    answers = {}
    for method, path in ROUTES:
        body = {"tracked": [record("during-outage")]} if method == "POST" else None
        r = requests.request(
            method, f"{api.url}{path}", json=body, headers=api.auth, timeout=HTTP_TIMEOUT
        )
        answers[f"{method} {path}"] = (r.status_code, r.headers.get("Retry-After"))
    wrong = {route: got for route, got in answers.items() if got[0] != 503 or not got[1]}
    assert not wrong, f"expected (503, Retry-After), got {wrong}"


def test_readyz_says_not_ready_while_the_database_is_down(down: tuple[Api, TcpProxy]) -> None:
    """Sanity check of the outage: /readyz answers 503 once the proxy is shut."""
    api, proxy = down
    assert requests.get(f"{api.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200
    proxy.stop()
    assert requests.get(f"{api.url}/readyz", timeout=HTTP_TIMEOUT).status_code == 503


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/events", {"service_id": "heygen::a\x00b"}),
        ("/api/v1/events", {"client_customer_key": "ac\x00me"}),
        ("/api/v1/events/order%00123", {}),
    ],
    ids=["query-service_id", "query-client_customer_key", "path-response_id"],
)
def test_a_nul_in_a_query_or_path_parameter_is_400(
    api: Api, path: str, params: dict[str, str]
) -> None:
    """A NUL byte in an id given as a query or path parameter is answered 400 on either
    backend (PostgreSQL answered 503: the database refused the text)."""
    assert api.track([record("stored")]).status_code == 200
    r = api.get(path, **params)
    assert r.status_code == 400, (r.status_code, r.text[:200])
