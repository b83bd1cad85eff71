"""Helpers for the delivery fault tests: a scriptable loopback collector, a tiny config,
tracker and child-process helpers. Only public names of aicm_manual are used.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from aicm_manual import Tracker

CONFIG_ID = "faults"
SERVICE_ID = "faults::unit"
UNIT_CONFIG: dict[str, Any] = {
    "config_id": CONFIG_ID,
    "description": "A tiny config for the delivery fault tests.",
    "version": "1",
    "manual_usage_schema": {"units": "int", "note": "Optional[str]"},
    "services": [
        {
            "service_id": SERVICE_ID,
            "pricing": {"currency": "USD", "unit": {"units": {"price": "0.01", "per": 1}}},
        }
    ],
}
USAGE: dict[str, Any] = {"units": 1}
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
FAST: dict[str, object] = {"backoff_initial": 0.01, "backoff_max": 0.05, "batch_interval": 0.01}
HANG_LIMIT = 60.0  # a hanging request is released at teardown, or after this long anyway


@dataclass
class Reply:
    """One scripted answer: ``status`` with ``headers``, after ``delay`` seconds."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b'{"detail": "scripted"}'


@dataclass
class Hit:
    """One POST /api/v1/track as the collector saw it."""

    at: float  # time.monotonic() on arrival
    key: str | None
    ids: list[str]
    status: int | None  # None: never answered (hung)


@dataclass
class Collector:
    """A loopback stand-in for the collector, scripted per request.

    Order of decisions for a POST: ``hang_keys`` (accept, never answer), ``hook`` (any
    Reply it returns), ``script`` (a queue of Replies), ``keys`` (others get 401), ``poison``
    (response_id -> status for the whole request whenever that record is in it), then
    store and answer 200 with per-record results (idempotent per key and response_id).
    GET /api/v1/configs[/id] serves ``configs`` (``config_status`` forces a status).
    """

    url: str = ""
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_status: int | None = None
    keys: set[str] | None = None
    hang_keys: set[str | None] = field(default_factory=set)
    hook: Callable[[str | None, list[str]], Reply | None] | None = None
    script: deque[Reply] = field(default_factory=deque)
    poison: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    stored: dict[tuple[str | None, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)  # set when stopped
    stop: Callable[[], None] = lambda: None

    def ids_for(self, key: str | None) -> set[str]:
        """Response ids stored for ``key``."""
        with self.lock:
            return {rid for (k, rid) in self.stored if k == key}

    def all_ids(self) -> set[str]:
        with self.lock:
            return {rid for (_, rid) in self.stored}

    def hits_for(self, key: str | None) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.key == key]

    def decide(self, key: str | None, ids: list[str]) -> Reply | None:
        if self.hook is not None:
            reply = self.hook(key, ids)
            if reply is not None:
                return reply
        with self.lock:
            step = self.script.popleft() if self.script else None
        if step is not None:
            return step
        if self.keys is not None and key not in self.keys:
            return Reply(401, body=b'{"detail": "unknown key"}')
        for rid in ids:
            if rid in self.poison:
                return Reply(self.poison[rid], body=b'{"detail": "cannot store"}')
        return None


def handler(state: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out without a 40 ms stall

        def _hang_up(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if state.release.is_set():  # stopped: keep-alive connections answer no more
                self._hang_up()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = self.rfile.read(int(headers.get("content-length", "0")))
            auth = headers.get("authorization", "")
            key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                tracked = json.loads(body)["tracked"]
            except (ValueError, KeyError, TypeError):
                self._answer(400, {}, b'{"detail": "malformed body"}')
                return
            ids = [str(r.get("response_id")) for r in tracked]
            now = time.monotonic()
            if key in state.hang_keys:
                with state.lock:
                    state.hits.append(Hit(now, key, ids, None))
                state.release.wait(HANG_LIMIT)
                self._hang_up()
                return
            reply = state.decide(key, ids)
            if reply is not None:
                if reply.delay:
                    time.sleep(reply.delay)
                with state.lock:
                    state.hits.append(Hit(now, key, ids, reply.status))
                self._answer(reply.status, reply.headers, reply.body)
                return
            results = []
            with state.lock:
                state.hits.append(Hit(now, key, ids, 200))
                for index, record in enumerate(tracked):
                    rid = str(record.get("response_id"))
                    seen = (key, rid) in state.stored
                    state.stored.setdefault((key, rid), record)
                    status = "duplicate" if seen else "accepted"
                    results.append({"index": index, "response_id": rid, "status": status})
            answer = json.dumps({"results": results, "summary": {"received": len(results)}})
            self._answer(200, {"Content-Type": "application/json"}, answer.encode())

        def do_GET(self) -> None:
            if state.release.is_set():
                self._hang_up()
                return
            if state.config_status is not None:
                self._answer(state.config_status, {}, b'{"detail": "forced"}')
                return
            if self.path == "/api/v1/configs":
                listing = json.dumps({"configs": list(state.configs.values())}).encode()
                self._answer(200, {"Content-Type": "application/json"}, listing)
                return
            config_id = self.path.rpartition("/")[2]
            if not self.path.startswith("/api/v1/configs/") or config_id not in state.configs:
                self._answer(404, {}, b'{"detail": "not found"}')
                return
            body = json.dumps(state.configs[config_id]).encode()
            self._answer(200, {"Content-Type": "application/json"}, body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def closed_port_url() -> str:
    """A URL nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def make_tracker(schemas_dir: Path, url: str, key: str | None = "sk-a", **kwargs: Any) -> Tracker:
    """A tracker for the ``faults`` config with fast retries unless told otherwise."""
    options = {**FAST, **kwargs.pop("delivery_options", {})}
    return Tracker(
        CONFIG_ID,
        SERVICE_ID,
        schemas_dir=schemas_dir,
        aicm_api_base=url,
        aicm_api_key=key,
        environ=NO_INI,
        delivery_options=options,
        **kwargs,
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this one's (PYTHONPATH included), no AICM_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICM_")}
    env["AICM_INI_PATH"] = "/nonexistent/AICM.INI"
    env.update(extra)
    return env


def run_python(
    script: Path | str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a Python file (or ``-c`` code when ``script`` is a str) and wait at most
    ``timeout`` seconds; a child still running then is killed and the test fails."""
    argv = (
        [sys.executable, str(script)]
        if isinstance(script, Path)
        else [
            sys.executable,
            "-c",
            script,
        ]
    )
    proc = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else child_env(),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"child did not finish within {timeout} s\nstdout: {out[-2000:]}\nstderr: {err[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
