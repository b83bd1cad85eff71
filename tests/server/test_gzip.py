"""A gzip body is exactly one gzip member; anything after it is a
malformed body (400), not silently dropped records."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

from .live import Api, collector, record


def _body(*rids: str) -> bytes:
    return json.dumps({"tracked": [record(rid) for rid in rids]}).encode()


@pytest.fixture
def api(sqlite_database: str) -> Iterator[Api]:
    with collector(sqlite_database) as a:
        yield a


def test_one_gzip_member_is_accepted(api: Api) -> None:
    """Sanity check: a single-member gzip body is read whole (200, one result a record)."""
    r = api.post_raw(gzip.compress(_body("a1", "a2")), **{"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text[:300]
    assert [x["response_id"] for x in r.json()["results"]] == ["a1", "a2"]


@pytest.mark.parametrize(
    ("name", "tail"),
    [
        ("second-member", gzip.compress(_body("b1"))),
        ("garbage", b"trailing garbage"),
        ("one-byte", b"\x00"),
    ],
    ids=["second-member", "garbage", "one-byte"],
)
def test_bytes_after_the_gzip_member_are_400(api: Api, name: str, tail: bytes) -> None:
    """A second gzip member or trailing bytes make the request 400, and nothing is stored
    (the first member's records were stored and answered 200, the rest ignored)."""
    r = api.post_raw(gzip.compress(_body(f"{name}-a")) + tail, **{"Content-Encoding": "gzip"})
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "detail" in r.json()
    assert api.event(f"{name}-a").status_code == 404
