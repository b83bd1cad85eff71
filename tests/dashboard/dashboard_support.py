"""Helpers for the dashboard tests: a real collector with the dashboard mounted, on
127.0.0.1, over a fresh SQLite file with two tenants' demo-like events in a fixed week."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from aicm_manual._secret import key_digest
from aicm_manual.server._dashboard import mount_dashboard
from aicm_manual.server._embedded import build
from aicm_manual.server._storage.protocol import Storage

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY_A = "aicm_dashboard_key_tenant_a"
KEY_B = "aicm_dashboard_key_tenant_b"
READ_ONLY_A = "aicm_dashboard_read_only_a"
INGEST_ONLY_A = "aicm_dashboard_ingest_only_a"
SECRET = b"s" * 48
WEEK = {"from": "2026-11-01", "to": "2026-11-08"}
CUSTOMERS_A = ["acme", "globex", "initech", "umbrella"]
CUSTOMERS_B = ["<script>alert(1)</script>", "only-in-b"]


@dataclass
class Clock:
    """Seconds since the epoch, moved by tests to pass a session's expiry."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Running:
    url: str
    storage: Storage
    clock: Clock
    database: str

    def api(self, path: str, key: str = KEY_A, **params: str) -> Any:
        r = requests.get(
            f"{self.url}/api/v1{path}",
            params=params,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()


def demo_records(rng: random.Random, customers: list[str], count: int) -> list[dict[str, Any]]:
    """Records like the demo's: two OpenAI models, an avatar service and an unpriced one."""
    records = []
    for i in range(count):
        day, second = rng.randrange(7), rng.randrange(86_400)
        clock = f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        when = f"2026-11-{1 + day:02d}T{clock}Z"
        kind = rng.random()
        record: dict[str, Any] = {
            "response_id": f"r{i}",
            "timestamp": when,
            "client_customer_key": rng.choice(customers),
            "context": {"feature": rng.choice(["chat", "search", "summary"])},
        }
        if kind < 0.45:
            model = "gpt-4o-mini"
        elif kind < 0.75:
            model = "gpt-4o"
        else:
            model = None
        if model is not None:
            record.update(
                config_id="openai-chat",
                service_id=f"openai::{model}",
                usage={
                    "model": model,
                    "input_tokens": rng.randrange(50, 8000),
                    "output_tokens": rng.randrange(10, 2000),
                },
            )
        elif kind < 0.93:
            record.update(
                config_id="heygen",
                service_id="heygen::streaming-avatar",
                usage={"duration": round(rng.uniform(5, 600), 1), "avatar_id": "anna"},
            )
        else:  # no config lists it: stored unpriced
            record.update(service_id="contoso::reranker", usage={"documents": 20})
        records.append(record)
    return records


def post(url: str, key: str, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 500):
        r = requests.post(
            f"{url}/api/v1/track",
            json={"tracked": records[start : start + 500]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code in (200, 207), r.text
        assert all(x["status"] == "accepted" for x in r.json()["results"]), r.text


@pytest.fixture(scope="module", name="running")
def running_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The collector and its dashboard on a loopback port, seeded once per module."""
    data = tmp_path_factory.mktemp("dashboard")
    database = f"sqlite:///{data / 'collector.db'}"
    keys = [f"tenant-a:{KEY_A}", f"tenant-b:{KEY_B}"]
    storage, app = build(database, SCHEMAS, keys, dashboard=False)  # mounted below, test clock
    storage.put_key(key_digest(READ_ONLY_A), "tenant-a", frozenset({"read"}))
    storage.put_key(key_digest(INGEST_ONLY_A), "tenant-a", frozenset({"ingest"}))
    clock = Clock()
    mount_dashboard(app, storage, SECRET, clock=clock)
    try:
        with serving(app) as url:
            post(url, KEY_A, demo_records(random.Random(7), CUSTOMERS_A, 1200))
            post(url, KEY_B, demo_records(random.Random(8), CUSTOMERS_B, 60))
            yield Running(url, storage, clock, database)
    finally:
        storage.close()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="dashboard-test", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server died at start"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def sign_in(running: Running | str, key: str = KEY_A) -> requests.Session:
    """A requests session signed in through the form, as a browser would."""
    url = running if isinstance(running, str) else running.url
    session = requests.Session()
    form = session.get(f"{url}/dashboard/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = session.post(
        f"{url}/dashboard/login",
        data={"key": key, "csrf": csrf},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303, r.text
    return session
