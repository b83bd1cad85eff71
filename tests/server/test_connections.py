"""Idle or slow connections must not lock healthy clients out.

The collector runs as ``aicm-manual serve`` with its open-file limit lowered to 256; the
test then holds 300 connections open that never finish a request (half send nothing, half
a never-ending header). A normal request must still be answered within a deadline, which
needs header/idle timeouts and a connection cap below the file limit.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import requests

from aicm_manual.server._connections import ConnectionLimits

from .live import SCHEMAS, serve

FILE_LIMIT = 256
IDLE_CONNECTIONS = 300
DEADLINE_S = 30.0  # bounds the test; generous for any reasonable header timeout


def test_idle_connections_beyond_the_file_limit_do_not_lock_out_a_healthy_client(
    tmp_path: Path,
) -> None:
    """With more idle/slow connections open than the collector has file descriptors, a
    healthy client's GET /healthz is still answered 200 before the deadline."""
    args = ["--database", f"sqlite:///{tmp_path / 'c.db'}", "--schemas", str(SCHEMAS)]
    with serve(*args, cwd=tmp_path, nofile=FILE_LIMIT) as served:
        assert served.up, served.stop()
        port = int(served.url.rsplit(":", 1)[1])
        idle: list[socket.socket] = []
        try:
            for n in range(IDLE_CONNECTIONS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                if n % 2:  # slowloris: a request line and a header, never the blank line
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                idle.append(sock)
            answered, tries, last = False, 0, ""
            end = time.monotonic() + DEADLINE_S
            while not answered and time.monotonic() < end:
                tries += 1
                try:
                    r = requests.get(f"{served.url}/healthz", timeout=3)
                    answered, last = r.status_code == 200, str(r.status_code)
                except requests.RequestException as exc:
                    last = f"{type(exc).__name__}: {exc}"[:200]
                if not answered:
                    time.sleep(0.2)  # between tries; the deadline bounds the loop
            assert answered, (
                f"no answer to /healthz within {DEADLINE_S} s while {IDLE_CONNECTIONS} idle"
                f" connections were open ({tries} tries, last: {last})"
            )
        finally:
            for sock in idle:
                sock.close()


def _closed_by_server(sock: socket.socket, deadline_s: float) -> bool:
    """Whether the server closes ``sock`` (recv answers b"") within ``deadline_s``."""
    sock.settimeout(deadline_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_a_request_whose_headers_never_end_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    """With --header-timeout 1, a connection that sends part of its first request's headers,
    and one that does the same for its second request after a first answered one, are both
    closed by the server (the keep-alive timer alone would keep the second)."""
    args = ["--database", f"sqlite:///{tmp_path / 'c.db'}", "--schemas", str(SCHEMAS)]
    with serve(*args, "--header-timeout", "1", "--idle-timeout", "60", cwd=tmp_path) as served:
        assert served.up, served.stop()
        port = int(served.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
            first.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_server(first, DEADLINE_S)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            second.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            second.settimeout(5)
            assert second.recv(65536).startswith(b"HTTP/1.1 200")
            second.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_server(second, DEADLINE_S)


class _Transport:
    def __init__(self) -> None:
        self.sent = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True


class _Cycle:
    def __init__(self, response_complete: bool) -> None:
        self.response_complete = response_complete


class _Conn:
    def __init__(self, cycle: _Cycle | None) -> None:
        self.cycle = cycle
        self.transport = _Transport()


def test_at_the_cap_the_oldest_idle_connection_gives_way_else_the_new_one_gets_503() -> None:
    """At the cap a new connection closes the oldest one with no request in progress; when
    every open connection is busy, the new one is answered 503 with Retry-After and closed."""
    limits = ConnectionLimits(max_connections=3)
    busy, idle_old, idle_new = _Conn(_Cycle(False)), _Conn(None), _Conn(_Cycle(True))
    for conn in (busy, idle_old, idle_new):
        assert limits.admit(conn)
    newcomer = _Conn(None)
    assert limits.admit(newcomer)
    assert idle_old.transport.closed
    assert not busy.transport.closed
    assert not idle_new.transport.closed
    assert limits.evicted == 1
    newcomer.cycle = _Cycle(False)
    idle_new.cycle = _Cycle(False)
    refused = _Conn(None)
    assert not limits.admit(refused)
    assert refused.transport.closed
    assert refused.transport.sent.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in refused.transport.sent
    assert limits.refused == 1
    assert list(limits.open) == [busy, idle_new, newcomer]
