"""What the reference examples take for granted, kept apart from the examples themselves:
a local stand-in for ``OpenAI()``, the sessions of the batch pages, and a way to serve a
FastAPI app on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

USAGE = {"prompt_tokens": 12, "completion_tokens": 17, "total_tokens": 29}


class _Completions:
    def create(self, *, model: str, messages: Any, stream: bool = False, **_: Any) -> Any:
        if stream:
            return iter(_chunks(model))
        return ChatCompletion.model_validate(
            {
                "id": "chatcmpl-local-1",
                "object": "chat.completion",
                "created": 1741569952,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Snow falls, soft and slow."},
                    }
                ],
                "usage": USAGE,
            }
        )


def _chunks(model: str) -> list[ChatCompletionChunk]:
    def chunk(delta: dict[str, Any] | None, usage: dict[str, int] | None = None) -> Any:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
        return ChatCompletionChunk.model_validate(
            {
                "id": "chatcmpl-local-2",
                "object": "chat.completion.chunk",
                "created": 1741569952,
                "model": model,
                "choices": choices,
                "usage": usage,
            }
        )

    return [
        chunk({"role": "assistant", "content": "Snow"}),
        chunk({"content": " falls"}),
        chunk(None, USAGE),
    ]


class LocalOpenAI:
    """Answers ``chat.completions.create`` like OpenAI, with real SDK response types."""

    def __init__(self) -> None:
        self.chat = SimpleNamespace(completions=_Completions())


@dataclass
class Session:
    id: str
    session_id: str
    duration: float
    duration_seconds: float
    customer_id: str | None
    video_id: str | None
    user_id: str | None
    created_at: datetime


def sessions(prefix: str, count: int = 3) -> list[Session]:
    return [
        Session(
            id=f"{prefix}-{i}",
            session_id=f"{prefix}-{i}",
            duration=30.0 * (i + 1),
            duration_seconds=30.0 * (i + 1),
            customer_id=f"cust-{i}" if i % 2 == 0 else None,
            video_id=f"video-{i}",
            user_id=None,
            created_at=datetime(2026, 1, 2, 3, 4, i, tzinfo=timezone.utc),
        )
        for i in range(count)
    ]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, with its start-up and shutdown."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the example's app did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
