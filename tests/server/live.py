"""Helpers for the collector's live tests: real collectors on 127.0.0.1 (in this process or
as ``aicm-manual serve``), real SQLite files and the local PostgreSQL; fixtures in conftest.

Every private import of the package is in this file, so that a change of module layout
means editing only here: ``aicm_manual.server._embedded.embedded_collector`` runs the
collector in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

import aicm_manual

# -- the private imports (see the module docstring) --------------------------------------
from aicm_manual.server._embedded import embedded_collector as _embedded_collector

SRC = Path(aicm_manual.__file__).resolve().parents[1]
REPO = SRC.parent
SCHEMAS = REPO / "schemas"
POSTGRES_URL = os.environ.get("AICM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TENANT = "tenant-a"
KEY = "aicm_live_test_key_tenant_a"
HTTP_TIMEOUT = 10.0
BACKENDS = ["sqlite", "postgres"]


# -- HTTP ---------------------------------------------------------------------------------


@dataclass
class Api:
    """A running collector and the key used to talk to it."""

    url: str
    key: str = KEY

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def track(self, records: list[Any]) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1/track",
            json={"tracked": records},
            headers=self.auth,
            timeout=HTTP_TIMEOUT,
        )

    def post_raw(self, body: bytes, **headers: str) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1/track",
            data=body,
            headers={**self.auth, "Content-Type": "application/json", **headers},
            timeout=HTTP_TIMEOUT,
        )

    def get(self, path: str, **params: str) -> requests.Response:
        return requests.get(
            f"{self.url}{path}", params=params, headers=self.auth, timeout=HTTP_TIMEOUT
        )

    def event(self, response_id: str) -> requests.Response:
        """GET /api/v1/events/{response_id}, the id percent-encoded as one path segment."""
        return self.get(f"/api/v1/events/{quote(response_id, safe='')}")


@contextmanager
def collector(
    database: str, schemas: str | Path = SCHEMAS, keys: Sequence[str] = (f"{TENANT}:{KEY}",)
) -> Iterator[Api]:
    """A collector in this process on a free loopback port (uvicorn in a daemon thread)."""
    with _embedded_collector(database, schemas, list(keys)) as c:
        yield Api(c.url)


def record(rid: str, **changes: Any) -> dict[str, Any]:
    """A valid, priced record (heygen: 60 s at 0.10 USD a minute = 0.1 USD)."""
    rec: dict[str, Any] = {
        "config_id": "heygen",
        "service_id": "heygen::streaming-avatar",
        "response_id": rid,
        "timestamp": "2026-11-24T10:00:00Z",
        "usage": {"duration": 60.0},
        "client_customer_key": "acme",
    }
    rec.update(changes)
    return rec


def statuses(response: requests.Response) -> list[str]:
    return [r["status"] for r in response.json()["results"]]


# -- PostgreSQL ---------------------------------------------------------------------------


def pg_url(schema: str, base: str = POSTGRES_URL) -> str:
    """A URL whose search_path is ``schema`` (the public way to pick a schema)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


# -- processes ----------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no AICM_* settings of ours, this source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICM_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
    )
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m aicm_manual ARGV`` to completion (bounded by ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "aicm_manual", *argv],
        cwd=cwd,
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    """An ``aicm-manual serve`` subprocess: ``up`` once /healthz answered, else it exited."""

    proc: subprocess.Popen[str]
    url: str
    up: bool

    def stop(self, timeout: float = 15) -> tuple[str, str]:
        """SIGTERM (then SIGKILL), and its (stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate(timeout=timeout)


@contextmanager
def serve(
    *argv: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    nofile: int | None = None,
    deadline: float = 30,
) -> Iterator[Served]:
    """``aicm-manual serve --host 127.0.0.1 --port FREE ARGV`` until /healthz answers or the
    process exits (``up`` tells which); stopped by its pid afterwards. ``nofile`` lowers
    the process's open-file limit (RLIMIT_NOFILE) before the collector starts."""
    port = free_port()
    launcher = [sys.executable, "-m", "aicm_manual"]
    if nofile is not None:
        launcher = [
            sys.executable,
            "-c",
            "import resource, runpy, sys\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, hard))\n"
            "sys.argv = ['aicm-manual', *sys.argv[1:]]\n"
            "runpy.run_module('aicm_manual', run_name='__main__', alter_sys=True)\n",
        ]
    proc = subprocess.Popen(
        [*launcher, "serve", "--host", "127.0.0.1", "--port", str(port), *argv],
        cwd=cwd,
        env=cli_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(proc, f"http://127.0.0.1:{port}", up=False)
    try:
        end = time.monotonic() + deadline
        while proc.poll() is None and time.monotonic() < end:
            try:
                if requests.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    served.up = True
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)  # the port is not open yet; the deadline bounds the wait
        if proc.poll() is None and not served.up:
            pytest.fail(f"serve neither answered /healthz nor exited within {deadline} s")
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=15)


# -- a TCP proxy: a database that can go away ----------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to ``target``; ``stop()`` closes the listener and every
    forwarded connection, so the database behind it is unreachable, as in an outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, name="test-db-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.stopped:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            with suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self.listener.close()
            for s in self.sockets:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()
