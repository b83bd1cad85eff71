"""Connection limits for the collector's HTTP server: no client can hold the others out.

    limits = ConnectionLimits.for_this_process(header_timeout=10.0)
    config = uvicorn.Config(app, http=limits.protocol(), timeout_keep_alive=5)

uvicorn times out a connection only between requests (keep-alive). A connection that
never finishes its first request's headers, sent by a slow or hostile client, would hold
its file descriptor for ever, and once the process runs out of descriptors nobody else is
served. So:

- a connection must finish a request's headers within ``header_timeout`` seconds of
  opening, and of the first byte of each later request on it (between requests uvicorn's
  keep-alive timeout closes it when idle);
- at most ``max_connections`` are open, well below the descriptor limit so that the
  database, the worker threads and new accepts always have some. When a new connection
  would pass the cap, the oldest connection with no request in progress is closed to make
  room: idle and slow connections give way to working ones. When every connection is busy,
  the new one is answered 503 with Retry-After and closed.
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

_BUSY_BODY = b'{"detail": "too many connections, retry later"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def default_max_connections(soft_limit: int | None = None) -> int:
    """The cap for this process: its open-file limit less a quarter (at least 128) kept for
    the database, threads and files."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit == resource.RLIM_INFINITY:
            soft_limit = 65536
    return max(16, soft_limit - max(128, soft_limit // 4))


@dataclass
class ConnectionLimits:
    max_connections: int = field(default_factory=default_max_connections)
    header_timeout: float = 10.0
    open: OrderedDict[Any, None] = field(default_factory=OrderedDict)
    evicted: int = 0  # idle connections closed to make room
    refused: int = 0  # connections answered 503 because every other one was busy

    def protocol(self, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
        """uvicorn's HTTP protocol class (httptools, else h11) under these limits."""
        if base is None:
            try:
                from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
            except ImportError:  # pragma: no cover - uvicorn without its [standard] extra
                from uvicorn.protocols.http.h11_impl import H11Protocol as base
        limits = self

        class Limited(base):  # type: ignore[valid-type,misc]
            _header_timer: asyncio.TimerHandle | None = None
            _waiting_after: Any = None  # the request (cycle) before the one awaited

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                if limits.admit(self):
                    self._await_headers()

            def data_received(self, data: bytes) -> None:
                # Bytes of a next request on a kept-alive connection: its headers are due
                # in time too (uvicorn's keep-alive timer stops at the first byte).
                if _idle(self) and (
                    self._header_timer is None or self._waiting_after is not self.cycle
                ):
                    self._await_headers()
                super().data_received(data)

            def _await_headers(self) -> None:
                if self._header_timer is not None:
                    self._header_timer.cancel()
                self._waiting_after = self.cycle
                self._header_timer = self.loop.call_later(
                    limits.header_timeout, self._header_timeout
                )

            def _header_timeout(self) -> None:
                self._header_timer = None
                # No new request began since the timer was set: a slow or silent client.
                if self.cycle is self._waiting_after and not self.transport.is_closing():
                    self.transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                if self._header_timer is not None:
                    self._header_timer.cancel()
                limits.open.pop(self, None)
                super().connection_lost(exc)

        return Limited

    def admit(self, conn: Any) -> bool:
        """Register a new connection, making room if the cap is reached; False when it was
        refused (every other connection busy)."""
        if len(self.open) >= self.max_connections:
            for other in self.open:
                if _idle(other):
                    self.open.pop(other)
                    other.transport.close()
                    self.evicted += 1
                    break
            else:
                self.refused += 1
                conn.transport.write(_BUSY)
                conn.transport.close()
                return False
        self.open[conn] = None
        return True


def _idle(conn: Any) -> bool:
    """No request in progress: none started yet, or the last one answered."""
    return conn.cycle is None or bool(conn.cycle.response_complete)
