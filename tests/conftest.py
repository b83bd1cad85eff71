"""Shared fixtures: a real HTTP collector stand-in on 127.0.0.1 and clean global state."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import reset_global_delivery
from aicm_manual._configs.sources import reset_shared_config_sources
from aicm_manual.testing import CollectorStub
from loopback import serve_http

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
# Last good config copies (offline start) go to a scratch cache, never the user's own.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="aicm-test-cache-")


@dataclass
class ConfigServer:
    """Serves ``GET /api/v1/configs/{id}`` from ``configs`` with ETags, like the collector,
    and ``POST /api/v1/track`` through ``collector`` (a scriptable CollectorStub).

    ``seen`` records (path, headers) of every request; ``force_status`` makes every answer
    that status; ``api_key`` (when set) must arrive as a Bearer token or the answer is 401.
    """

    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    force_status: int | None = None
    api_key: str | None = None
    url: str = ""
    collector: CollectorStub = field(default_factory=CollectorStub)

    def etag(self, config_id: str) -> str:
        body = json.dumps(self.configs[config_id], sort_keys=True).encode()
        return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.seen.append((path, headers))
        if self.force_status is not None:
            return self.force_status, {}, b'{"detail": "forced"}'
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, b'{"detail": "unknown key"}'
        if path == "/api/v1/configs":
            listing = {"configs": list(self.configs.values())}
            return 200, {"Content-Type": "application/json"}, json.dumps(listing).encode()
        prefix = "/api/v1/configs/"
        config_id = path[len(prefix) :] if path.startswith(prefix) else None
        if config_id not in self.configs:
            return 404, {}, b'{"detail": "not found"}'
        etag = self.etag(config_id)
        if headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        body = json.dumps(self.configs[config_id]).encode()
        return 200, {"ETag": etag, "Content-Type": "application/json"}, body


def _handler(server: ConfigServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real collector would

        def do_POST(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self.rfile.read(int(headers.get("content-length", "0")))
            auth = headers.get("authorization", "")
            key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
            try:
                status, extra, answer = server.collector.handle(key, body, headers)
            except ConnectionResetError:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = server.handle(self.path, headers)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def config_server() -> Iterator[ConfigServer]:
    """A ConfigServer listening on 127.0.0.1 (an ephemeral port), preloaded with schemas/."""
    state = ConfigServer()
    for file in SCHEMAS_DIR.glob("*.json"):
        data = json.loads(file.read_text())
        state.configs[data["config_id"]] = data
    with serve_http(_handler(state), "test-config-server") as url:
        state.url = url
        yield state


@pytest.fixture(autouse=True)
def _fresh_globals() -> Iterator[None]:
    """Every test starts and ends without shared config caches or a delivery engine."""
    reset_shared_config_sources()
    reset_global_delivery(timeout=0)
    yield
    reset_global_delivery(timeout=0)
    reset_shared_config_sources()


@pytest.fixture
def schemas_dir() -> Path:
    return SCHEMAS_DIR
