"""One hostile record must not poison its batch, and SQLite and PostgreSQL
must accept and refuse exactly the same records.

Each corpus entry is sent between two good records, to a SQLite collector and to a
PostgreSQL collector; every answer is compared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .live import Api, collector, record, statuses

UNCONFIGURED = "vendorx::free"  # no config lists it: any usage object, stored unpriced


def _r(name: str, **changes: Any) -> dict[str, Any]:
    """A record named ``name`` (its response_id unless the change replaces it)."""
    return record(f"hostile-{name}", **changes)


def _free(name: str, **changes: Any) -> dict[str, Any]:
    rec = _r(name, **{"service_id": UNCONFIGURED, "usage": {"n": 1}, **changes})
    del rec["config_id"]
    return rec


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth):
        value = {"a": value}
    return value


# (name, the hostile record) -- sent as {"tracked": [good, hostile, good]}
RECORDS: list[tuple[str, dict[str, Any]]] = [
    # NUL, in every string the storage keeps as text and in the JSON ones
    ("nul-response-id", _r("x", response_id="order\x00123")),
    ("nul-response-id-only", _r("x", response_id="\x00")),
    ("nul-service-id", _free("nul-service-id", service_id="vendorx::a\x00b")),
    ("nul-service-id-configured", _r("x", service_id="heygen::streaming-avatar\x00")),
    ("nul-customer", _r("nul-customer", client_customer_key="ac\x00me")),
    ("nul-usage-string", _r("nul-usage-string", usage={"duration": 60.0, "avatar_id": "a\x00"})),
    ("nul-usage-key", _free("nul-usage-key", usage={"k\x00": 1})),
    ("nul-context", _r("nul-context", context={"note": "x\x00y", "k\x00": ["\x00"]})),
    # other control characters, invisible and direction characters
    *[
        (f"ctl-{ord(ch):04x}-response-id", _r("x", response_id=f"r{ch}1"))
        for ch in "\x01\x08\t\n\r\x1b\x1f\x7f\x85\u2028\u200b\u202e\ufeff\uffff"
    ],
    ("ctl-customer", _r("ctl-customer", client_customer_key="a\x1bb\x7f")),
    ("ctl-service-id", _free("ctl-service-id", service_id="vendorx::a\x01b")),
    # unicode: astral, combining, right-to-left, private use, non-characters
    ("emoji-response-id", _r("x", response_id="order-😀-𝔘")),
    ("combining-response-id", _r("x", response_id="cafe\u0301")),
    ("precomposed-response-id", _r("x", response_id="caf\u00e9")),
    ("rtl-customer", _r("rtl-customer", client_customer_key="שלום-عميل")),
    ("private-use-service", _free("private-use-service", service_id="vendorx::\ue000\U0010fffd")),
    ("unicode-usage", _free("unicode-usage", usage={"ключ": "值", "😀": ["\U0001f600"]})),
    # separators and URL syntax in ids
    *[
        (f"url-{n}-response-id", _r("x", response_id=rid))
        for n, rid in enumerate(["order/123", "/", "a/../b", "%2F", "a?b=c", "a#b", "a\\b", ".."])
    ],
    ("slash-customer", _r("slash-customer", client_customer_key="team/acme")),
    ("spaces-response-id", _r("x", response_id="  spaced  ")),
    ("only-spaces-response-id", _r("x", response_id="   ")),
    # lengths, in characters and in bytes
    ("id-255", _r("x", response_id="r" * 255)),
    ("id-256", _r("x", response_id="r" * 256)),
    ("id-255-astral", _r("x", response_id="😀" * 255)),
    ("id-256-astral", _r("x", response_id="😀" * 256)),
    ("customer-256", _r("customer-256", client_customer_key="c" * 256)),
    ("service-id-long", _free("service-id-long", service_id="vendorx::" + "m" * 5000)),
    ("empty-response-id", _r("x", response_id="")),
    ("empty-customer", _r("empty-customer", client_customer_key="")),
    # numbers
    ("huge-priced-int", _r("huge-priced-int", usage={"duration": 10**30})),
    ("int64-overflow-field", _r("int64-field", usage={"duration": 1.0, "interruptions": 2**64})),
    ("huge-free-int", _free("huge-free-int", usage={"n": 10**400})),
    ("negative-huge-int", _free("negative-huge-int", usage={"n": -(2**63) - 1})),
    ("max-float", _r("max-float", usage={"duration": 1.7976931348623157e308})),
    ("negative-duration", _r("negative-duration", usage={"duration": -60.0})),
    # shapes
    ("deep-context", _r("deep-context", context=_nested(200))),
    ("wide-usage", _free("wide-usage", usage={f"k{i}": i for i in range(5000)})),
    ("usage-list", _r("usage-list", usage=[1, 2])),
    ("usage-null", _r("usage-null", usage=None)),
    ("response-id-int", _r("x", response_id=123)),
    ("config-id-int", _r("config-id-int", config_id=7)),
    ("unknown-key", {**_r("unknown-key"), "extra": 1}),
    # timestamps the storage must hold the same way
    ("timestamp-year-1", _r("timestamp-year-1", timestamp="0001-01-01T00:00:00Z")),
    ("timestamp-offset", _r("timestamp-offset", timestamp="2026-11-24T10:00:00+14:00")),
    ("timestamp-naive", _r("timestamp-naive", timestamp="2026-11-24T10:00:00")),
    ("timestamp-nul", _r("timestamp-nul", timestamp="2026-11-24T10:00:00Z\x00")),
]

# (name, a whole body) -- what JSON itself may carry: lone surrogates, bad UTF-8, overflow
_GOOD = json.dumps(record("raw-before"))
_BAD = json.dumps(record("RID"))
RAW: list[tuple[str, bytes]] = [
    (name, f'{{"tracked": [{_GOOD}, {_BAD.replace("RID", rid)}]}}'.encode())
    for name, rid in [
        ("raw-lone-high-surrogate", "a\\ud800b"),
        ("raw-lone-low-surrogate", "a\\udc00b"),
        ("raw-escaped-nul", "a\\u0000b"),
    ]
] + [
    ("raw-invalid-utf8", f'{{"tracked": [{_GOOD}, {_BAD}]}}'.encode().replace(b"RID", b"a\xffb")),
    ("raw-float-overflow", f'{{"tracked": [{_GOOD}, {_BAD}]}}'.encode().replace(b"60.0", b"1e400")),
]


def _answer(api: Api, name: str, hostile: dict[str, Any]) -> tuple[int, list[str] | str]:
    response = api.track([record(f"{name}-before"), hostile, record(f"{name}-after")])
    if response.status_code in (200, 207):
        return response.status_code, statuses(response)
    return response.status_code, response.text[:200]


@pytest.fixture
def both(sqlite_database: str, pg_database: str) -> Iterator[tuple[Api, Api]]:
    """A SQLite collector and a PostgreSQL collector, same configs and key."""
    with collector(sqlite_database) as lite, collector(pg_database) as pg:
        yield lite, pg


def test_both_backends_answer_every_hostile_record_alike_without_5xx(
    both: tuple[Api, Api],
) -> None:
    """Every corpus entry gets the same answer on SQLite and PostgreSQL, never a 5xx, and the
    good records around it are accepted."""
    lite, pg = both
    problems: list[str] = []
    for name, hostile in RECORDS:
        on_lite, on_pg = _answer(lite, name, hostile), _answer(pg, name, hostile)
        if on_lite[0] >= 500 or on_pg[0] >= 500:
            problems.append(f"{name}: 5xx: sqlite {on_lite} postgres {on_pg}")
        elif on_lite != on_pg:
            problems.append(f"{name}: backends differ: sqlite {on_lite} postgres {on_pg}")
        elif isinstance(on_lite[1], list) and on_lite[1][::2] != ["accepted", "accepted"]:
            problems.append(f"{name}: good neighbours not accepted: {on_lite}")
    for name, body in RAW:
        codes = (lite.post_raw(body).status_code, pg.post_raw(body).status_code)
        if max(codes) >= 500 or codes[0] != codes[1]:
            problems.append(f"{name}: sqlite {codes[0]} postgres {codes[1]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("response_id", "order\x00123"),
        ("service_id", "vendorx::a\x00b"),
        ("client_customer_key", "ac\x00me"),
    ],
)
def test_a_nul_in_an_id_is_rejected_per_record_and_its_neighbours_are_stored(
    api: Api, field: str, value: str
) -> None:
    """A NUL in an id is answered `rejected` (207) on either backend; the good records of
    the same request are accepted and can be read back."""
    hostile = record("nul-record", **{field: value})
    if field == "service_id":
        del hostile["config_id"]
    response = api.track([record("good-before"), hostile, record("good-after")])
    assert response.status_code == 207, (response.status_code, response.text[:300])
    assert statuses(response) == ["accepted", "rejected", "accepted"]
    assert response.json()["results"][1]["errors"]
    for rid in ("good-before", "good-after"):
        assert api.event(rid).status_code == 200


def test_one_batch_of_the_whole_corpus_stores_its_good_records(api: Api) -> None:
    """The whole corpus in one request with good records at both ends: a per-record answer
    (never a 5xx) and the good records stored."""
    batch = [record("batch-first"), *(r for _, r in RECORDS), record("batch-last")]
    response = api.track(batch)
    assert response.status_code in (200, 207), (response.status_code, response.text[:300])
    results = statuses(response)
    assert len(results) == len(batch)
    assert results[0] == results[-1] == "accepted"
    assert api.event("batch-first").status_code == 200
    assert api.event("batch-last").status_code == 200
