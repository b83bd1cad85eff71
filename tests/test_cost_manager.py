"""CostManager with the real OpenAI and Anthropic clients against a loopback server that
answers like the vendors (JSON and server-sent events), records captured or sent to the
real collector. No mocks of HTTP: the SDKs make real requests to 127.0.0.1."""

from __future__ import annotations

import gc
import itertools
import json
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests

from aicm_manual import ConfigError, Tracker, TrackerClosedError
from aicm_manual._cost_manager import CostManager, default_config_id
from aicm_manual.server._embedded import embedded_collector
from aicm_manual.testing import CapturingDelivery
from loopback import serve_http

ROOT = Path(__file__).resolve().parents[1]
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
MESSAGES = [{"role": "user", "content": "Give me a haiku about snow."}]

# --- a loopback vendor ---------------------------------------------------------------------

CREATED = 1741569952
CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
RESPONSES_USAGE = {
    "input_tokens": 500,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 70,
    "output_tokens_details": {"reasoning_tokens": 32},
    "total_tokens": 570,
}
ANTHROPIC_USAGE = {
    "input_tokens": 300,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 200,
    "output_tokens": 250,
}


@dataclass
class VendorServer:
    """Answers POST /v1/chat/completions, /v1/responses and /v1/messages like OpenAI and
    Anthropic, as JSON or as server-sent events for ``"stream": true``, with fixed token
    counts. The model steers failures: "explode" answers 500, "drop" cuts a stream after
    its first events. Every request body is kept in ``requests``."""

    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, str, list[str]]:
        """(status, content type, parts): one JSON part, or the SSE events of a stream."""
        self.requests.append((path, body))
        n = next(self.ids)
        model = body.get("model", "")
        if model == "explode":
            return 500, "application/json", [json.dumps({"error": {"message": "boom"}})]
        stream = body.get("stream") is True
        if path == "/v1/chat/completions":
            return self._chat(n, model, body, stream)
        if path == "/v1/responses":
            return self._responses(n, model, stream)
        if path == "/v1/messages":
            return self._messages(n, model, stream)
        return 404, "application/json", [json.dumps({"error": {"message": "no route"}})]

    @staticmethod
    def _chat(n: int, model: str, body: dict[str, Any], stream: bool) -> tuple[int, str, list[str]]:
        base = {"id": f"chatcmpl-{n}", "created": CREATED, "model": model}
        if not stream:
            message = {"role": "assistant", "content": "Snow falls."}
            return (
                200,
                "application/json",
                [
                    json.dumps(
                        {
                            **base,
                            "object": "chat.completion",
                            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                            "usage": CHAT_USAGE,
                        }
                    )
                ],
            )
        chunk = {**base, "object": "chat.completion.chunk"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            for word in ("Snow", " falls", ".")
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": CHAT_USAGE})
        return 200, "text/event-stream", [*(sse(e) for e in events), "data: [DONE]\n\n"]

    @staticmethod
    def _responses(n: int, model: str, stream: bool) -> tuple[int, str, list[str]]:
        def response(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
            return {
                "id": f"resp_{n}",
                "object": "response",
                "created_at": CREATED,
                "model": model,
                "status": status,
                "output": [],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": usage,
            }

        if not stream:
            return 200, "application/json", [json.dumps(response("completed", RESPONSES_USAGE))]
        events = [
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": response("in_progress", None),
            },
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": "Snow falls.",
                "logprobs": [],
            },
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": response("completed", RESPONSES_USAGE),
            },
        ]
        return 200, "text/event-stream", [sse(e, e["type"]) for e in events]

    @staticmethod
    def _messages(n: int, model: str, stream: bool) -> tuple[int, str, list[str]]:
        message = {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not stream:
            return (
                200,
                "application/json",
                [
                    json.dumps(
                        {
                            **message,
                            "content": [{"type": "text", "text": "Snow falls."}],
                            "stop_reason": "end_turn",
                            "usage": ANTHROPIC_USAGE,
                        }
                    )
                ],
            )
        start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
        events = [
            {"type": "message_start", "message": {**message, "content": [], "usage": start_usage}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Snow"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 250},
            },
            {"type": "message_stop"},
        ]
        return 200, "text/event-stream", [sse(e, e["type"]) for e in events]


def sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


def _handler(server: VendorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status, kind, parts = server.answer(self.path, body)
            data = "".join(parts).encode()
            drop = body.get("model") == "drop"
            if drop:
                data = "".join(parts[:2]).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            # A dropped stream promises more than it sends, then the connection goes.
            self.send_header("Content-Length", str(len(data) + (1000 if drop else 0)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            if drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def vendor_server() -> Iterator[VendorServer]:
    state = VendorServer()
    with serve_http(_handler(state), "test-vendor-server") as url:
        state.url = url
        yield state


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def vendor() -> Iterator[VendorServer]:
    with vendor_server() as server:
        yield server


def copy_schemas(tmp_path: Path) -> Path:
    """schemas/ with the CostManager configs, wherever they are staged."""
    out = tmp_path / "schemas"
    out.mkdir()
    for path in [
        *(ROOT / "schemas").glob("*.json"),
        *(ROOT / "schemas" / "pending").glob("*.json"),
    ]:
        shutil.copy(path, out / path.name)
    return out


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    return copy_schemas(tmp_path)


@pytest.fixture
def delivery() -> CapturingDelivery:
    return CapturingDelivery()


def openai_client(vendor: VendorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vendor.url}/v1", api_key="test", max_retries=0)


def anthropic_client(vendor: VendorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=vendor.url, api_key="test", max_retries=0)


def manager(client: Any, schemas: Path, delivery: CapturingDelivery, **kwargs: Any) -> CostManager:
    return CostManager(client, schemas_dir=schemas, delivery=delivery, environ=NO_INI, **kwargs)


CHAT_CANONICAL = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 1024,
    "reasoning_tokens": 0,
    "model": "gpt-4o-mini",
}
ANTHROPIC_CANONICAL = {
    "input_tokens": 1500,
    "output_tokens": 250,
    "cache_read_tokens": 1000,
    "cache_write_tokens": 200,
    "model": "claude-haiku-4-5",
}

# --- OpenAI ------------------------------------------------------------------------------------


def test_a_chat_completion_is_tracked_once_under_its_own_id(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    with manager(openai_client(vendor), schemas, delivery) as cm:
        completion = cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    [record] = delivery.wire()
    assert record["config_id"] == "openai"
    assert record["service_id"] == "openai::gpt-4o-mini"
    assert record["response_id"] == completion.id == "chatcmpl-1"
    assert record["timestamp"] == "2025-03-10T01:25:52.000000Z"  # the vendor's `created`
    assert record["usage"] == CHAT_CANONICAL
    assert cm.tracked == 1
    assert cm.errors == 0
    assert cm.get_tracked_payloads() == [
        {
            "config_id": "openai",
            "response_id": "chatcmpl-1",
            "usage": CHAT_CANONICAL,
            "service_id": "openai::gpt-4o-mini",
        }
    ]


def test_a_chat_stream_asks_for_usage_and_is_tracked_at_its_end(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery)
    stream = cm.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    # The handling config's stream_kwargs asked for the final usage chunk.
    assert vendor.requests[-1][1]["stream_options"] == {"include_usage": True}
    chunks = list(stream)
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Snow falls."
    assert stream.response_id == "chatcmpl-1"
    assert isinstance(stream.response.status_code, int)  # the SDK stream's own attribute
    [record] = delivery.wire()
    assert record["usage"] == CHAT_CANONICAL
    cm.close()


def test_the_callers_stream_options_are_kept_and_completed(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery)
    options = {"include_obfuscation": False}
    with cm.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=options
    ) as stream:
        list(stream)
    assert vendor.requests[-1][1]["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    assert options == {"include_obfuscation": False}  # the caller's dict is not changed
    assert len(delivery) == 1


def test_responses_and_their_streams(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery)
    response = cm.responses.create(model="gpt-4.1", input="Snow?")
    events = list(cm.responses.create(model="gpt-4.1", input="Snow?", stream=True))
    assert response.id == "resp_1"
    assert [e.type for e in events][-1] == "response.completed"
    first, second = delivery.wire()
    expected = {
        "input_tokens": 500,
        "output_tokens": 70,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 32,
        "model": "gpt-4.1",
    }
    assert (first["response_id"], first["usage"]) == ("resp_1", expected)
    assert (second["response_id"], second["usage"]) == ("resp_2", expected)


def test_only_tracked_methods_are_wrapped(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    client = openai_client(vendor)
    cm = manager(client, schemas, delivery)
    assert cm.unwrapped is client
    assert cm.base_url == client.base_url  # plain attributes come through unchanged
    assert cm.models is client.models  # not on the way to a tracked method
    assert cm.chat.completions.with_raw_response is client.chat.completions.with_raw_response
    assert type(cm.chat).__name__ == "_Proxy"
    assert cm.chat.completions.create.__wrapped__ == client.chat.completions.create
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # not tracked
    assert len(delivery) == 0


def test_a_failed_call_raises_as_before_and_tracks_nothing(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery)
    with pytest.raises(openai.InternalServerError):
        cm.chat.completions.create(model="explode", messages=MESSAGES)
    assert len(delivery) == 0
    assert cm.errors == 0


def test_a_tracking_failure_never_fails_the_call_unless_strict(
    vendor: VendorServer,
    schemas: Path,
    delivery: CapturingDelivery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(schemas_dir=schemas, delivery=delivery, environ=NO_INI)
    cm = CostManager(openai_client(vendor), tracker=tracker)
    tracker.close()
    completion = cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.id == "chatcmpl-1"
    assert cm.errors == 1
    assert isinstance(cm.last_error, TrackerClosedError)
    assert "aicm: openai call of chat.completions.create was not tracked" in caplog.text
    strict = CostManager(openai_client(vendor), tracker=tracker, strict=True)
    with pytest.raises(TrackerClosedError):
        strict.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_a_stream_without_usage_is_an_error_counted_not_raised(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery)
    chunks = list(
        cm.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": False},  # the caller's explicit choice wins
        )
    )
    assert len(chunks) == 3
    assert len(delivery) == 0
    assert cm.errors == 1
    assert "include_usage" in str(cm.last_error)


def test_memory_stays_bounded(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(openai_client(vendor), schemas, delivery, keep_payloads=5)
    for _ in range(40):
        cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert cm.tracked == 40
    kept = cm.get_tracked_payloads()
    assert [p["response_id"] for p in kept] == [f"chatcmpl-{n}" for n in range(36, 41)]


# --- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_messages_and_streams(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    with manager(anthropic_client(vendor), schemas, delivery) as cm:
        assert cm.config_id == "anthropic"
        message = cm.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
        stream = cm.messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True
        )
        kinds = [event.type for event in stream]
    assert message.id == "msg_1"
    assert kinds[0] == "message_start"
    first, second = delivery.wire()
    assert first["usage"] == second["usage"] == ANTHROPIC_CANONICAL  # 250, not 1
    assert (first["service_id"], second["response_id"]) == ("anthropic::claude-haiku-4-5", "msg_2")


def test_a_dropped_stream_tracks_what_arrived_and_raises(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(anthropic_client(vendor), schemas, delivery)
    stream = cm.messages.create(model="drop", max_tokens=64, messages=MESSAGES, stream=True)
    seen = []
    with pytest.raises(Exception, match="peer closed connection") as info:
        seen.extend(event.type for event in stream)
    assert not isinstance(info.value, AssertionError)
    assert seen == ["message_start", "content_block_start"]
    [record] = delivery.wire()
    assert record["usage"]["output_tokens"] == 1  # only message_start's count had arrived
    assert record["service_id"] == "anthropic::drop"


def test_an_abandoned_stream_is_tracked(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    cm = manager(anthropic_client(vendor), schemas, delivery)
    stream = cm.messages.create(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES, stream=True
    )
    next(stream)
    del stream
    gc.collect()
    [record] = delivery.wire()
    assert record["usage"]["input_tokens"] == 1500


# --- any client ----------------------------------------------------------------------------------


class Calculator:
    """Not an LLM: a client whose calls are billed by a handling config's mapping."""

    def __init__(self) -> None:
        self.jobs = self

    def add(self, a: int, b: int, *, customer: str | None = None) -> dict[str, Any]:
        return {"value": a + b, "run": {"id": f"add-{a}-{b}"}}

    def run(self, steps: int) -> Iterator[dict[str, Any]]:
        for step in range(1, steps + 1):
            yield {"done": step, "run": {"id": f"run-{steps}"}}


CALCULATOR = {
    "config_id": "calculator",
    "manual_usage_schema": {"value": "int", "operands": "Dict[str, int | str]"},
    "services": [{"service_id": "calc::basic", "pricing": {"unit": {"value": {"price": "0.01"}}}}],
    "handling_config": {
        "tracked_methods": [
            "add",
            {
                "method": "jobs.run",
                "request_fields": ["steps"],
                "response_fields": ["done", {"key": "run_id", "path": "run.id"}],
                "payload_mapping": {
                    "usage.value": "response_data.done",
                    "usage.operands": "request_data",
                    "response_id": "response_data.run_id",
                },
            },
        ],
        "request_fields": ["a", "b", "customer"],
        "response_fields": ["value", {"key": "run_id", "path": "run.id"}],
        "payload_mapping": {
            "usage.value": "response_data.value",
            "usage.operands": "request_data",
            "client_customer_key": "request_data.customer",
            "response_id": "response_data.run_id",
        },
        "static_payload_fields": {"service_id": "calc::basic", "context.via": "cost-manager"},
    },
}


def test_any_client_with_its_own_handling_config(
    schemas: Path, delivery: CapturingDelivery
) -> None:
    (schemas / "calculator.json").write_text(json.dumps(CALCULATOR))
    cm = manager(Calculator(), schemas, delivery)
    assert cm.config_id == "calculator"
    assert cm.add(2, 3) == {"value": 5, "run": {"id": "add-2-3"}}  # positional: not captured
    assert cm.add(a=4, b=5, customer="acme")["value"] == 9
    assert [step["done"] for step in cm.jobs.run(steps=3)] == [1, 2, 3]
    records = delivery.wire()
    assert [r["usage"] for r in records] == [
        {"value": 5, "operands": {}},
        {"value": 9, "operands": {"a": 4, "b": 5, "customer": "acme"}},
        {"value": 3, "operands": {"steps": 3}},  # the last event of the stream
    ]
    assert [r["response_id"] for r in records] == ["add-2-3", "add-4-5", "run-3"]
    assert records[1]["client_customer_key"] == "acme"
    assert records[1]["context"] == {"via": "cost-manager"}
    assert {r["service_id"] for r in records} == {"calc::basic"}


def test_configs_that_cannot_drive_a_cost_manager_are_refused(
    schemas: Path, delivery: CapturingDelivery
) -> None:
    with pytest.raises(ConfigError, match="config 'internal-api' has no handling_config"):
        manager(Calculator(), schemas, delivery, config_id="internal-api")
    with pytest.raises(ConfigError, match=r"heygen\.json: handling_config is invalid") as info:
        manager(Calculator(), schemas, delivery, config_id="heygen")
    assert "tracked_methods must be a non-empty list" in str(info.value)
    bad = {**CALCULATOR, "handling_config": {"tracked_methods": ["add"], "payload_mapping": {}}}
    (schemas / "calculator.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="nothing produces the usage"):
        manager(Calculator(), schemas, delivery)
    tracker = Tracker(schemas_dir=schemas, delivery=delivery, environ=NO_INI)
    with pytest.raises(TypeError, match=r"tracker settings \['schemas_dir'\] go to your Tracker"):
        CostManager(Calculator(), tracker=tracker, schemas_dir=schemas)


def test_default_config_ids() -> None:
    assert default_config_id(openai.OpenAI(api_key="test")) == "openai"
    assert default_config_id(openai.AsyncOpenAI(api_key="test")) == "openai"
    assert default_config_id(anthropic.AsyncAnthropic(api_key="test")) == "anthropic"
    assert default_config_id(Calculator()) == "calculator"


def test_a_given_tracker_is_flushed_not_closed(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    tracker = Tracker(schemas_dir=schemas, delivery=delivery, environ=NO_INI)
    with CostManager(openai_client(vendor), tracker=tracker) as cm:
        cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert not tracker.closed
    owned = manager(openai_client(vendor), schemas, delivery)
    owned.close()
    assert owned.tracker.closed
    assert "CostManager closed OpenAI config_id='openai' tracked=0" in repr(owned)


# --- through the real collector ------------------------------------------------------------------


def test_records_reach_the_collector_priced_and_once(
    vendor: VendorServer, schemas: Path, tmp_path: Path
) -> None:
    key = "aicm_cost_manager_key"
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", schemas, [f"t:{key}"]) as c:
        cm = CostManager(
            openai_client(vendor),
            aicm_api_base=c.url,
            aicm_api_key=key,
            delivery_type="immediate",
            environ=NO_INI,
            strict=True,
        )
        completion = cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        # The same response tracked again (here by hand) is a duplicate, not a second bill.
        from aicm_manual._llm.tracking import track_llm_usage

        track_llm_usage(cm.tracker.track, "openai_chat", completion, config_id="openai")
        cm.close()
        answer = requests.get(
            f"{c.url}/api/v1/events/{completion.id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
    [event] = answer["events"]
    assert event["config_id"] == "openai"
    assert event["usage"] == CHAT_CANONICAL
    # gpt-4o-mini: 176 input at 0.15, 1024 cache reads at 0.075, 300 output at 0.60 per MTok.
    assert Decimal(event["cost"]) == Decimal("0.0002832")


def test_enforce_limits_stops_the_call_before_it_is_made(
    vendor: VendorServer, schemas: Path, delivery: CapturingDelivery
) -> None:
    """Under an exceeded block budget for the customer, the wrapped call never reaches the
    vendor: UsageLimitExceeded is raised before it; another customer's call goes through."""
    from aicm_manual import UsageLimitExceeded

    cm = manager(openai_client(vendor), schemas, delivery, enforce_limits=True)
    try:
        guard = cm.tracker.limits
        assert guard is not None
        guard.set_budgets(
            [
                {
                    "budget_id": "acme-monthly",
                    "scope": {"client_customer_key": "acme", "service_id": "openai::*"},
                    "action": "block",
                    "state": "exceeded",
                    "period_end": "2999-01-01T00:00:00.000000Z",
                }
            ]
        )
        cm.tracker.set_customer_key("acme")
        before = len(vendor.requests)
        with pytest.raises(UsageLimitExceeded, match="acme-monthly"):
            cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(vendor.requests) == before  # the expensive call was never made
        cm.tracker.set_customer_key("globex")
        cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(vendor.requests) == before + 1
    finally:
        cm.close()
