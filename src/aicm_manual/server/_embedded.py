"""Run the collector inside this process, on a loopback port, for demos and tests.

    with embedded_collector("sqlite:///data/demo.db", "schemas", ["demo:aicm_demo_key"]) as c:
        tracker = Tracker("heygen", "heygen::streaming-avatar", aicm_api_base=c.url,
                          aicm_api_key="aicm_demo_key")

uvicorn serves the app in a daemon thread on a socket bound here (port 0 picks a free
one), so the URL is known before the first request and nothing is started by hand.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from .._configs.sources import DirectoryConfigSource
from .._secret import abbreviate, key_digest
from ..errors import ConfigError, StorageError
from ._app import create_app
from ._auth import parse_key_spec
from ._dashboard import load_secret, mount_dashboard
from ._pricing import Pricer
from ._storage import check_url, disk_full_hint, open_storage
from ._storage.protocol import SCOPES, Storage


@dataclass
class EmbeddedCollector:
    url: str
    storage: Storage
    server: uvicorn.Server


def build(
    database: str, schemas_dir: str | Path, api_keys: Sequence[str], *, dashboard: bool = True
) -> tuple[Storage, Starlette]:
    """The app and its storage; keys and configs are checked before the database opens.
    ``dashboard=False`` leaves the dashboard out (to mount one with other settings)."""
    check_url(database)
    keys = check_key_specs(api_keys)
    configs = DirectoryConfigSource(schemas_dir).all()
    pricer = Pricer(configs)
    pricer.warm_up()
    storage = open_storage(database)
    try:
        for tenant, key in keys:
            storage.put_key(key_digest(key), tenant, SCOPES)
        app = create_app(storage, configs, pricer)
        if dashboard:  # /dashboard (and / redirecting to it) reads the same storage
            mount_dashboard(app, storage, load_secret(database))
        return storage, app
    except StorageError as exc:
        storage.close()
        hint = ""
        if database.startswith("sqlite:///") and "full" not in str(exc):
            hint = disk_full_hint(Path(database[len("sqlite:///") :]).expanduser())
        raise StorageError(f"{exc}{hint}") from exc
    except BaseException:
        storage.close()
        raise


def check_key_specs(api_keys: Sequence[str]) -> list[tuple[str, str]]:
    """(tenant, key) of each ``[TENANT:]KEY``, once each; a key named for two tenants is
    refused, naming both (a key belongs to one tenant)."""
    tenant_of: dict[str, str] = {}
    for spec in api_keys:
        tenant, key = parse_key_spec(spec)
        earlier = tenant_of.setdefault(key, tenant)
        if earlier != tenant:
            raise ConfigError(
                f"key {abbreviate(key_digest(key))} is named for tenant {earlier!r} and for"
                f" tenant {tenant!r}; a key belongs to one tenant"
            )
    return [(tenant, key) for key, tenant in tenant_of.items()]


@contextmanager
def embedded_collector(
    database: str,
    schemas_dir: str | Path,
    api_keys: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 10.0,
) -> Iterator[EmbeddedCollector]:
    storage, app = build(database, schemas_dir, api_keys)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="aicm-collector", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the embedded collector did not start")
        time.sleep(0.01)
    bound = sock.getsockname()
    try:
        yield EmbeddedCollector(f"http://{bound[0]}:{bound[1]}", storage, server)
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()
        app.state.collector.money.stop()  # the budget and webhook threads, before the database
        app.state.collector.flush_stats(final=True)
        storage.close()
