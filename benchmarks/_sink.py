"""Loopback HTTP sink for benchmarks/delivery.py: one process, asyncio, 127.0.0.1 only.

Run as ``python benchmarks/_sink.py``; it binds an ephemeral port on 127.0.0.1 and prints
``PORT <n>`` on stdout. The harness stops it by pid. It runs in its own process so that
parsing the uploads never competes for the GIL with the client under test.

Every client under test gets its own path prefix, ``/p/<peer>/...``, and the sink answers
each wire protocol with a success:

- ours and aicostmanager: ``POST .../api/v1/track`` with ``{"tracked": [record, ...]}``
  (JSON, optionally gzip or deflate) -> 200 with one result per record in input order.
  Ours gets ``"status": "accepted"`` (DESIGN section 5); aicostmanager 0.3.2 gets
  ``"status": "queued"``, one of the statuses its ImmediateDelivery accepts (it raises
  NoCostsTrackedException, and logs it, on any other). Also ``GET .../api/v1/configs/{id}``
  from ``--schemas`` when given.
- segment-analytics-python: ``POST .../v1/batch`` ``{"batch": [...]}`` -> 200.
- posthog: ``POST .../batch/`` ``{"batch": [...]}`` -> 200 ``{"status": 1}``; also
  ``/i/v0/e/``, ``/e/``, ``/capture/`` (one event) and ``/i/v1/analytics/events``.
- OTLP/HTTP: ``POST .../v1/traces`` (protobuf ``ExportTraceServiceRequest``, parsed with
  opentelemetry-proto, every span counted and its span_id kept) -> 200, empty protobuf.

Records are counted per peer (total and distinct ids), with requests, bytes and the
monotonic time of the first and last record (``time.monotonic_ns``: CLOCK_MONOTONIC, the
same clock in every process on Linux). Control endpoints (no prefix):

- ``GET /stats`` -> ``{"peers": {peer: {...}}, "paused": bool}``; ``?since=N`` limits the
  batch-size figures (min, median, max) to each peer's requests after its Nth
- ``POST /reset`` forget every count; ``POST /pause`` answer every upload with
  ``503`` and ``Retry-After: 0.1`` until ``POST /resume``.
- ``POST /keep?n=N`` keep the first N ``/api/v1/track`` records of each peer as received
  (off by default; benchmarks/llm.py reads the usage they carry) and ``GET /records?peer=P``
  -> ``{"records": [...]}``. ``/reset`` forgets them.

Anything else gets 404 and is counted under ``other_paths``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024 * 1024

try:  # counted precisely when the proto package is there (the OTLP exporter depends on it)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
except ImportError:  # pragma: no cover - only when the OTLP peer is not installed
    ExportTraceServiceRequest = None


class PeerStats:
    __slots__ = (
        "busy_ns",
        "bytes_in",
        "first_ns",
        "first_ok_after_resume_ns",
        "ids",
        "kept",
        "last_ns",
        "other_paths",
        "records",
        "rejected_paused",
        "requests",
        "sizes",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.records = 0
        self.bytes_in = 0
        self.busy_ns = 0  # time spent decoding, counting and answering this peer's uploads
        self.ids: set[Any] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.rejected_paused = 0
        self.first_ok_after_resume_ns = 0
        self.other_paths: dict[str, int] = {}
        self.sizes: list[int] = []  # records per accepted request
        self.kept: list[Any] = []  # the first records as received, when the sink keeps any

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        sizes = sorted(self.sizes[since:])  # batch sizes of the requests after ``since``
        return {
            "requests": self.requests,
            "records": self.records,
            "distinct": len(self.ids),
            "bytes_in": self.bytes_in,
            "busy_ns": self.busy_ns,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "rejected_paused": self.rejected_paused,
            "first_ok_after_resume_ns": self.first_ok_after_resume_ns,
            "other_paths": dict(self.other_paths),
            "batch_min": sizes[0] if sizes else 0,
            "batch_median": sizes[len(sizes) // 2] if sizes else 0,
            "batch_max": sizes[-1] if sizes else 0,
        }


class Sink:
    def __init__(self, schemas: Path | None) -> None:
        self.peers: dict[str, PeerStats] = {}
        self.paused = False
        self.resumed_at_ns = 0
        self.keep = 0  # records kept per peer (POST /keep?n=N)
        self.configs: dict[str, bytes] = {}
        if schemas is not None:
            for file in sorted(schemas.glob("*.json")):
                data = json.loads(file.read_text(encoding="utf-8"))
                self.configs[str(data["config_id"])] = json.dumps(data).encode()

    def peer(self, name: str) -> PeerStats:
        stats = self.peers.get(name)
        if stats is None:
            stats = self.peers[name] = PeerStats()
        return stats

    # -- request handling -----------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path, _, query = path.partition("?")
        if not path.startswith("/p/"):
            return self.control(method, path, query)
        _, _, rest = path.partition("/p/")
        name, _, sub = rest.partition("/")
        sub = "/" + sub
        stats = self.peer(name)
        if method == "GET" and sub.startswith("/api/v1/configs/"):
            config = self.configs.get(sub.rsplit("/", 1)[1])
            if config is None:
                return 404, {}, b'{"detail": "not found"}'
            return 200, {"Content-Type": "application/json"}, config
        if method != "POST":
            stats.other_paths[f"{method} {sub}"] = stats.other_paths.get(f"{method} {sub}", 0) + 1
            return 404, {}, b"{}"
        if self.paused:
            stats.rejected_paused += 1
            return 503, {"Retry-After": "0.1"}, b'{"detail": "paused"}'
        encoding = headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        stats.bytes_in += len(body)
        if sub == "/api/v1/track":
            tracked = json.loads(body)["tracked"]
            status = "queued" if name.startswith("aicostmanager") else "accepted"
            ids = [r.get("response_id") for r in tracked]
            tail = f', "status": "{status}"}}'
            results = ", ".join(  # same bytes as json.dumps of the dicts, built faster
                f'{{"index": {i}, "response_id": {json.dumps(rid)}{tail}'
                for i, rid in enumerate(ids)
            )
            answer = f'{{"results": [{results}], "summary": {{"{status}": {len(ids)}}}}}'
            self.count(stats, ids)
            if len(stats.kept) < self.keep:
                stats.kept.extend(tracked[: self.keep - len(stats.kept)])
            return 200, {"Content-Type": "application/json"}, answer.encode()
        if sub == "/v1/batch":  # segment
            self.count(stats, [m.get("messageId") for m in json.loads(body)["batch"]])
            return 200, {"Content-Type": "application/json"}, b'{"success": true}'
        if sub in ("/batch/", "/batch", "/i/v1/analytics/events"):  # posthog
            data = json.loads(body)
            events = data if isinstance(data, list) else data.get("batch", [])
            self.count(stats, [e.get("uuid") for e in events])
            return 200, {"Content-Type": "application/json"}, b'{"status": 1}'
        if sub in ("/i/v0/e/", "/e/", "/capture/"):  # posthog single event
            self.count(stats, [json.loads(body).get("uuid")])
            return 200, {"Content-Type": "application/json"}, b'{"status": 1}'
        if sub == "/v1/traces":
            if ExportTraceServiceRequest is None:
                return 500, {}, b"opentelemetry-proto is not installed in the sink"
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            ids = [
                span.span_id
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]
            self.count(stats, ids)
            return 200, {"Content-Type": "application/x-protobuf"}, b""
        stats.other_paths[f"POST {sub}"] = stats.other_paths.get(f"POST {sub}", 0) + 1
        return 404, {}, b"{}"

    def count(self, stats: PeerStats, ids: list[Any]) -> None:
        now = time.monotonic_ns()
        n = len(ids)
        stats.requests += 1
        stats.records += n
        stats.sizes.append(n)
        stats.ids.update(ids)
        if n:
            if not stats.first_ns:
                stats.first_ns = now
            stats.last_ns = now
            if self.resumed_at_ns and not stats.first_ok_after_resume_ns:
                stats.first_ok_after_resume_ns = now

    def control(self, method: str, path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        json_type = {"Content-Type": "application/json"}
        if path == "/stats":  # ?since=N: batch sizes over each peer's requests after the Nth
            since = int(query[6:]) if query.startswith("since=") else 0
            peers = {name: s.snapshot(since) for name, s in self.peers.items()}
            body = {"peers": peers, "paused": self.paused, "now_ns": time.monotonic_ns()}
            return 200, json_type, json.dumps(body).encode()
        if path == "/records":  # ?peer=P: the records kept for that peer
            name = query[5:] if query.startswith("peer=") else ""
            kept = self.peers[name].kept if name in self.peers else []
            return 200, json_type, json.dumps({"records": kept}).encode()
        if method == "POST" and path == "/keep":  # ?n=N
            self.keep = max(0, int(query[2:])) if query.startswith("n=") else 0
            return 200, json_type, b"{}"
        if method == "POST" and path == "/reset":
            self.peers.clear()
            self.paused = False
            self.resumed_at_ns = 0
            return 200, json_type, b"{}"
        if method == "POST" and path == "/pause":
            self.paused = True
            self.resumed_at_ns = 0
            return 200, json_type, b"{}"
        if method == "POST" and path == "/resume":
            self.paused = False
            self.resumed_at_ns = time.monotonic_ns()
            for stats in self.peers.values():
                stats.first_ok_after_resume_ns = 0
            return 200, json_type, json.dumps({"resumed_at_ns": self.resumed_at_ns}).encode()
        return 404, json_type, b"{}"

    # -- HTTP/1.1 over asyncio streams -------------------------------------------------------

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await read_chunked(reader)
                else:
                    length = int(headers.get("content-length", "0"))
                    if length > MAX_BODY:
                        raise ValueError("body too large")
                    body = await reader.readexactly(length) if length else b""
                t0 = time.perf_counter_ns()
                try:
                    status, extra, payload = self.handle(method, target, headers, body)
                except Exception as exc:  # a malformed upload is the client's bug: say so
                    status, extra, payload = 400, {}, repr(exc).encode()
                if target.startswith("/p/"):
                    name = target[3:].split("/", 1)[0]
                    self.peer(name).busy_ns += time.perf_counter_ns() - t0
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                out = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}"]
                out.append(f"Content-Length: {len(payload)}")
                out.extend(f"{k}: {v}" for k, v in extra.items())
                if close:
                    out.append("Connection: close")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Error", 503: "Unavailable"}


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def main() -> None:
    schemas = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    sink = Sink(schemas)
    server = await asyncio.start_server(
        sink.serve_connection, "127.0.0.1", 0, limit=1 << 20, backlog=512
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    async with server:
        while not stop.is_set():  # also stop if the harness went away
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                if os.getppid() != parent:
                    break


if __name__ == "__main__":
    asyncio.run(main())
