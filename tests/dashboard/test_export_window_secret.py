"""The export function the CLI uses, the window a URL names, and the cookie secret."""

from __future__ import annotations

import io
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import (
    Running,
    running_fixture,  # noqa: F401  # the `running` fixture
)

from aicm_manual.errors import ConfigError
from aicm_manual.server._dashboard import SECRET_ENV, export_events, load_secret
from aicm_manual.server._dashboard.window import WindowError, parse_window
from aicm_manual.server._storage.protocol import US_PER_DAY

NOV_1 = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z
NOV_8 = NOV_1 + 7 * US_PER_DAY


class CountingStorage:
    """The real storage, counting the pages the export asks for."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.pages: list[int] = []

    def list_events(self, tenant: str, **kwargs: Any) -> Any:
        self.pages.append(kwargs["limit"])
        return self.storage.list_events(tenant, **kwargs)


def test_export_pages_through_the_storage(running: Running) -> None:
    """export_events writes every matching event as JSON Lines, a thousand per read."""
    counting = CountingStorage(running.storage)
    out = io.BytesIO()
    count = export_events(counting, "tenant-a", "jsonl", NOV_1, NOV_8, {}, out)  # type: ignore[arg-type]
    lines = out.getvalue().decode().splitlines()
    assert count == len(lines) == 1200
    assert counting.pages == [1000, 1000]
    ids = [json.loads(line)["response_id"] for line in lines]
    assert len(set(ids)) == 1200


def test_export_csv_has_a_header_and_filters(running: Running) -> None:
    """The CSV starts with its header and holds only the filtered customer's events."""
    out = io.BytesIO()
    count = export_events(
        running.storage, "tenant-a", "csv", NOV_1, NOV_8, {"client_customer_key": "acme"}, out
    )
    text = out.getvalue().decode()
    assert text.startswith("response_id,config_id,service_id,timestamp,")
    assert count == text.count("\r\n") - 1 > 0
    assert ",globex," not in text


def test_export_refuses_unknown_formats_and_filters(running: Running) -> None:
    """A format or filter the export does not know is an error naming it."""
    with pytest.raises(ValueError, match="xml"):
        export_events(running.storage, "tenant-a", "xml", None, None, {}, io.BytesIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="colour"):
        export_events(running.storage, "tenant-a", "csv", None, None, {"colour": "x"}, io.BytesIO())


def test_default_window_is_thirty_whole_days() -> None:
    """Without from/to a view shows the 30 days ending at the next UTC midnight, by day."""
    now = NOV_8 + 5 * 3_600_000_000
    window = parse_window({}, now)
    assert window.until_us == NOV_8 + US_PER_DAY
    assert window.since_us == window.until_us - 30 * US_PER_DAY
    assert (window.bucket, window.explicit) == ("day", False)
    short = parse_window({"from": "2026-11-01", "to": "2026-11-02T12:00:00Z"}, now)
    assert (short.since, short.until, short.bucket) == (
        "2026-11-01",
        "2026-11-02T12:00:00Z",
        "hour",
    )


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"from": "last week"}, "'last week' is not a date"),
        ({"from": "2026-11-08", "to": "2026-11-01"}, "must be before"),
        ({"bucket": "minute"}, "bucket 'minute'"),
        ({"from": "2026-01-01", "to": "2026-12-01", "bucket": "hour"}, "at most 92 days"),
    ],
)
def test_bad_windows_name_the_value(query: dict[str, str], words: str) -> None:
    """A window that cannot be used is refused with a message naming what is wrong."""
    with pytest.raises(WindowError, match=words):
        parse_window(query, NOV_8)


def test_secret_from_the_environment() -> None:
    """AICM_DASHBOARD_SECRET wins when set, and must be long enough."""
    assert load_secret("sqlite:///x.db", environ={SECRET_ENV: "k" * 40}) == b"k" * 40
    with pytest.raises(ConfigError, match=SECRET_ENV):
        load_secret("sqlite:///x.db", environ={SECRET_ENV: "short"})


def test_secret_file_beside_the_sqlite_database(tmp_path: Path) -> None:
    """Without the variable, a secret is generated once beside the database, mode 0600."""
    url = f"sqlite:///{tmp_path / 'data' / 'collector.db'}"
    first = load_secret(url, environ={})
    file = tmp_path / "data" / "dashboard-secret"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret(url, environ={}) == first


def test_postgres_without_the_variable_warns(caplog: pytest.LogCaptureFixture) -> None:
    """With PostgreSQL and no variable, the process gets its own secret and a warning."""
    caplog.set_level(logging.WARNING)
    one = load_secret("postgresql://localhost/test", environ={})
    assert one != load_secret("postgresql://localhost/test", environ={})
    assert SECRET_ENV in caplog.text
