"""A loopback OpenAI-compatible endpoint: ``POST /v1/chat/completions`` answered as JSON, or
as server-sent events for ``"stream": true`` (with a last usage chunk when
``stream_options.include_usage`` asks for it), like OpenAI. Real HTTP on 127.0.0.1, so the
``openai`` SDK is exercised as in production.

The model steers the answer: ``"explode"`` answers 500, ``"no-usage"`` answers without
usage. Response ids count up (``chatcmpl-1``, ``chatcmpl-2``...); every request body is
kept in ``requests``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback import serve_http

CREATED = 1741569952  # 2025-03-10T01:25:52Z
USAGE = {"prompt_tokens": 12, "completion_tokens": 17, "total_tokens": 29}
CONTENT = "Snow falls, soft and slow."


@dataclass
class OpenAIServer:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` (or ``api_base``) should be."""
        return f"{self.url}/v1"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
        with self.lock:
            self.requests.append(body)
            n = next(self.ids)
        model = str(body.get("model", ""))
        if path != "/v1/chat/completions":
            return 404, "application/json", b'{"error": {"message": "no route"}}'
        if model == "explode":
            return 500, "application/json", b'{"error": {"message": "boom"}}'
        usage = None if model == "no-usage" else USAGE
        base = {"id": f"chatcmpl-{n}", "created": CREATED, "model": model}
        if body.get("stream") is not True:
            message = {"role": "assistant", "content": CONTENT}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            reply = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return 200, "application/json", json.dumps(reply).encode()
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            for w in ("Snow", " falls")
        ]
        if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return 200, "text/event-stream", data.encode()


def _handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status, kind, data = server.answer(self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def openai_server() -> Iterator[OpenAIServer]:
    """Serve an OpenAIServer on an ephemeral 127.0.0.1 port for the block's duration."""
    state = OpenAIServer()
    with serve_http(_handler(state), "test-openai-server") as url:
        state.url = url
        yield state
