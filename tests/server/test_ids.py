"""Every accepted response_id can be read back with
GET /api/v1/events/{response_id}, the id percent-encoded as one path segment."""

from __future__ import annotations

import pytest

from .live import Api, record

IDS = [
    "order/123",  # was 404: %2F decoded to "/" before routing
    "/leading",
    "trailing/",
    "a//b",
    "a%2Fb",  # a literal percent sign
    "a?b=c#d",
    "a b+c",
    "ünïcødé-😀",
]


@pytest.mark.parametrize("rid", IDS)
def test_an_accepted_id_can_be_read_back(api: Api, rid: str) -> None:
    """An id the collector accepted (here with `/` and other URL syntax) is found by
    GET /api/v1/events/{quote(id)}, and the event carries the same id."""
    sent = api.track([record(rid)])
    assert sent.status_code == 200, sent.text[:300]
    assert sent.json()["results"][0]["status"] == "accepted"
    got = api.event(rid)
    assert got.status_code == 200, (got.status_code, got.text[:200])
    assert [e["response_id"] for e in got.json()["events"]] == [rid]
