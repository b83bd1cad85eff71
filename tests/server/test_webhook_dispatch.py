"""Webhook messages go out signed (Standard Webhooks), keep their id on retries, and are
retried on a schedule whose first retry comes within 30 seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from aicm_manual.server._webhooks import (
    RETRY_AFTER_S,
    Dispatcher,
    Endpoint,
    Message,
    WebhookError,
    message_id,
    next_attempt,
    parse_webhook,
    threshold_body,
)

from .ledger_support import SECRET, Receiver, serve_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


class MemoryOutbox:
    """The Outbox protocol in memory, as the storage backends keep it in their database."""

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}

    def add_messages(self, messages: list[Message]) -> None:
        for message in messages:
            self.messages.setdefault(message.message_id, message)

    def due_messages(self, now_us: int, limit: int) -> list[Message]:
        due = [
            m
            for m in self.messages.values()
            if m.delivered_us is None
            and m.next_attempt_us is not None
            and m.next_attempt_us <= now_us
        ]
        return due[:limit]

    def record_attempt(
        self,
        message_id: str,
        attempts: int,
        next_attempt_us: int | None,
        delivered_us: int | None,
        error: str | None,
    ) -> None:
        old = self.messages[message_id]
        self.messages[message_id] = replace(
            old,
            attempts=attempts,
            next_attempt_us=next_attempt_us,  # type: ignore[arg-type]
            delivered_us=delivered_us,
            last_error=error,
        )


def message(created_s: float) -> Message:
    body = threshold_body({"budget_id": "b1", "threshold": 0.5, "spent": "5.000000000"})
    return Message(
        message_id("tenant-a", "ops", "b1", 0, "0.5"), "ops", "tenant-a", body, int(created_s * 1e6)
    )


def test_a_message_is_signed_and_verifies_at_the_receiver(receiver: Receiver) -> None:
    """The receiver's standardwebhooks.verify accepts the body, id and timestamp sent."""
    outbox = MemoryOutbox()
    endpoint = parse_webhook("ops", "tenant-a", {"url": receiver.url, "secret": SECRET})
    now = time.time()  # the receiver refuses signatures more than 5 minutes off its clock
    outbox.add_messages([message(now)])
    dispatcher = Dispatcher(outbox, lambda t, w: endpoint, clock=lambda: now)
    assert dispatcher.run_once() == 1
    assert receiver.verified == [json.loads(message(now).body)]
    assert receiver.seen[0]["webhook-id"] == message(now).message_id
    assert outbox.messages[message(now).message_id].delivered_us == int(now * 1e6)


def test_a_failed_message_is_retried_with_the_same_id_within_30_seconds(
    receiver: Receiver,
) -> None:
    """A receiver that fails first gets the same webhook-id again at the first retry."""
    now = [time.time()]
    first = message(now[0])
    outbox = MemoryOutbox()
    endpoint = parse_webhook("ops", "tenant-a", {"url": receiver.url, "secret": SECRET})
    outbox.add_messages([first])
    dispatcher = Dispatcher(outbox, lambda t, w: endpoint, clock=lambda: now[0])
    receiver.fail_next = 1
    dispatcher.run_once()
    stored = outbox.messages[first.message_id]
    assert stored.delivered_us is None
    assert stored.last_error == "HTTP 500"
    assert stored.next_attempt_us - stored.created_us <= 30_000_000
    assert dispatcher.run_once() == 0  # not due yet
    now[0] = stored.next_attempt_us / 1e6
    assert dispatcher.run_once() == 1
    ids = {h["webhook-id"] for h in receiver.seen}
    assert len(receiver.seen) == 2
    assert ids == {first.message_id}
    assert len(receiver.verified) == 1


def test_retries_stop_after_the_documented_schedule() -> None:
    """After the last scheduled retry a message is given up (next attempt None)."""
    assert next_attempt(0, 1) == RETRY_AFTER_S[0] * 1_000_000
    assert next_attempt(0, len(RETRY_AFTER_S)) == RETRY_AFTER_S[-1] * 1_000_000
    assert next_attempt(0, len(RETRY_AFTER_S) + 1) is None


def test_a_dead_endpoint_is_recorded_not_raised() -> None:
    """A refused connection is an attempt with its error; the dispatcher carries on."""
    outbox = MemoryOutbox()
    endpoint = Endpoint(
        "ops",
        "t",
        "http://127.0.0.1:9/none",
        parse_webhook("ops", "t", {"url": "http://127.0.0.1:9/", "secret": SECRET}).secret,
        frozenset({"budget.threshold"}),
    )
    outbox.add_messages([message(5.0)])
    Dispatcher(outbox, lambda t, w: endpoint, clock=lambda: 5.0).run_once()
    stored = outbox.messages[message(5.0).message_id]
    assert stored.attempts == 1
    assert stored.last_error is not None
    assert "ConnectionError" in stored.last_error


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"url": "ftp://x", "secret": SECRET}, "url must be"),
        ({"url": "http://127.0.0.1/", "secret": "hunter2"}, "secret must be"),
        ({"url": "http://127.0.0.1/", "secret": SECRET, "events": ["x"]}, "events must be"),
    ],
)
def test_bad_webhooks_are_refused_with_the_reason(body: dict[str, Any], problem: str) -> None:
    """Each problem is named; a secret is never echoed back."""
    with pytest.raises(WebhookError, match=problem) as caught:
        parse_webhook("ops", "t", body)
    assert "hunter2" not in str(caught.value)


def test_restricted_destinations_refuse_addresses_outside_the_allowed_networks() -> None:
    """With the opt-in restriction, a loopback URL is refused unless loopback is allowed."""
    body = {"url": "http://127.0.0.1:1/", "secret": SECRET}
    with pytest.raises(WebhookError, match="outside the allowed networks"):
        parse_webhook("ops", "t", body, allowed=["10.0.0.0/8"])
    assert parse_webhook("ops", "t", body, allowed=["127.0.0.0/8"]).url == body["url"]


def test_the_secret_never_shows_in_the_endpoint_view() -> None:
    """An endpoint's API view and repr hold no secret."""
    endpoint = parse_webhook("ops", "t", {"url": "http://127.0.0.1/", "secret": SECRET})
    assert SECRET not in json.dumps(endpoint.view())
    assert SECRET not in repr(endpoint)
