"""Webhooks: budget alerts delivered by the Standard Webhooks rules, through an outbox.

    endpoint = parse_webhook("ops", "tenant-a", {"url": ..., "secret": "whsec_...",
                                                 "events": ["budget.threshold"]})
    dispatcher = Dispatcher(outbox, endpoints)   # a thread; sends what is due, retries
    dispatcher.start()

Every message is written to the outbox (in the database) before anything is sent, so a
restart between a threshold crossing and its delivery still delivers it. A message keeps
its ``webhook-id`` on every retry; the receiver verifies ``webhook-signature`` (HMAC-SHA256
over ``id.timestamp.body``, signed with the ``standardwebhooks`` library). Retries follow
``RETRY_AFTER_S``: the first within 5 seconds, the last about a day after the first try.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

from .._secret import Secret

log = logging.getLogger("aicm_manual.server.webhooks")

EVENTS = frozenset({"budget.threshold"})
# Seconds after the first attempt at which a failed message is tried again.
RETRY_AFTER_S = (5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
SEND_TIMEOUT_S = 10.0
_SECRET_PREFIX = "whsec_"


class WebhookError(ValueError):
    """A webhook document that cannot be used; the message names every problem."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    webhook_id: str
    tenant: str
    url: str
    secret: Secret  # "whsec_" + base64; never printed
    events: frozenset[str]

    def view(self) -> dict[str, Any]:
        """What the API shows: never the secret."""
        return {"webhook_id": self.webhook_id, "url": self.url, "events": sorted(self.events)}


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery in the outbox: what to send, where, and how it went so far."""

    message_id: str  # the webhook-id header, the same on every retry
    webhook_id: str
    tenant: str
    body: bytes
    created_us: int
    attempts: int = 0
    next_attempt_us: int | None = 0  # None: given up
    delivered_us: int | None = None
    last_error: str | None = None


class Outbox(Protocol):
    """Where messages wait (the collector's database); safe across processes."""

    def add_messages(self, messages: Sequence[Message]) -> None:
        """Store messages not already stored (by message_id); others are left as they are."""
        ...

    def due_messages(self, now_us: int, limit: int) -> list[Message]:
        """Messages not delivered whose next attempt is due, claimed for a while so that
        another process does not send them at the same time."""
        ...

    def record_attempt(
        self,
        message_id: str,
        attempts: int,
        next_attempt_us: int | None,
        delivered_us: int | None,
        error: str | None,
    ) -> None:
        """The outcome of one attempt (``next_attempt_us`` None: given up)."""
        ...


def parse_webhook(
    webhook_id: str, tenant: str, body: object, allowed: Sequence[str] = ()
) -> Endpoint:
    """An endpoint from a ``PUT /api/v1/webhooks/{id}`` body. ``allowed`` (networks such
    as ``10.0.0.0/8``), when not empty, restricts where a URL may point."""
    problems: list[str] = []
    if not isinstance(body, Mapping):
        raise WebhookError("a webhook must be a JSON object with url, secret and events")
    unknown = sorted(str(k) for k in body if k not in {"url", "secret", "events"})
    if unknown:
        problems.append(f"unknown keys {unknown} (known: ['events', 'secret', 'url'])")
    url = body.get("url")
    if not isinstance(url, str) or not _is_http_url(url):
        problems.append("url must be an http:// or https:// URL")
    elif allowed:
        refused = destination_refused(url, allowed)
        if refused:
            problems.append(refused)
    secret = body.get("secret")
    if not isinstance(secret, str) or not _valid_secret(secret):
        problems.append("secret must be 'whsec_' followed by base64 of 24 to 64 random bytes")
    events = body.get("events", ["budget.threshold"])
    if not isinstance(events, list) or not events or not set(events) <= EVENTS:
        problems.append(f"events must be a non-empty list drawn from {sorted(EVENTS)}")
    if problems:
        raise WebhookError("; ".join(problems))
    assert isinstance(url, str)
    assert isinstance(secret, str)
    assert isinstance(events, list)
    return Endpoint(webhook_id, tenant, url, Secret(secret), frozenset(events))


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable()


def _valid_secret(secret: str) -> bool:
    import base64
    import binascii

    if not secret.startswith(_SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(raw) <= 64


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form."""
    import base64
    import secrets

    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def destination_refused(url: str, allowed: Sequence[str]) -> str | None:
    """Why ``url`` may not be called under the ``allowed`` networks, or None."""
    host = urlsplit(url).hostname or ""
    networks = [ipaddress.ip_network(n, strict=False) for n in allowed]
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"url host {host!r} does not resolve: {exc}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not any(ip in network for network in networks):
            return f"url host {host!r} resolves to {ip}, outside the allowed networks"
    return None


def message_id(
    tenant: str, webhook_id: str, budget_id: str, period_start_us: int, threshold: str
) -> str:
    """One id per webhook, budget, period and threshold: a crossing is announced once per
    period, whichever collector process sees it, and retries carry the same id."""
    key = "\0".join((tenant, webhook_id, budget_id, str(period_start_us), threshold))
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def threshold_body(data: Mapping[str, Any]) -> bytes:
    """The body of a ``budget.threshold`` message."""
    return json.dumps(
        {"type": "budget.threshold", "data": dict(data)}, separators=(",", ":"), sort_keys=True
    ).encode()


def signed_headers(secret: Secret, msg_id: str, when: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt."""
    from standardwebhooks import Webhook

    signature = Webhook(secret.reveal()).sign(msg_id, when, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "aicm-manual-webhooks",
    }


def next_attempt(created_us: int, attempts: int) -> int | None:
    """When to try a message again after ``attempts`` failed tries, or None to give up."""
    if attempts > len(RETRY_AFTER_S):
        return None
    return created_us + RETRY_AFTER_S[attempts - 1] * 1_000_000


Sender = Callable[[str, dict[str, str], bytes], tuple[bool, str | None]]


def http_sender(url: str, headers: dict[str, str], body: bytes) -> tuple[bool, str | None]:
    """POST once; (delivered, error). A 2xx answer is delivered, anything else is retried."""
    import requests

    try:
        answer = requests.post(
            url, data=body, headers=headers, timeout=SEND_TIMEOUT_S, allow_redirects=False
        )
    except requests.RequestException as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]
    if 200 <= answer.status_code < 300:
        return True, None
    return False, f"HTTP {answer.status_code}"


class Dispatcher:
    """One thread that sends due messages from the outbox and records each attempt."""

    def __init__(
        self,
        outbox: Outbox,
        endpoints: Callable[[str, str], Endpoint | None],
        *,
        sender: Sender = http_sender,
        allowed: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        interval: float = 1.0,
    ) -> None:
        self._outbox = outbox
        self._endpoints = endpoints  # (tenant, webhook_id) -> endpoint
        self._send = sender
        self._allowed = tuple(allowed)
        self._clock = clock
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aicm-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New messages are waiting: send now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a broken outbox must not kill the thread; it logs and waits
                log.exception("aicm webhooks: sending failed")
            self._wake.wait(self._interval)
            self._wake.clear()

    def run_once(self, limit: int = 100) -> int:
        """Send what is due now; returns how many messages were attempted."""
        now_us = int(self._clock() * 1_000_000)
        due = self._outbox.due_messages(now_us, limit)
        for message in due:
            self._attempt(message, now_us)
        return len(due)

    def _attempt(self, message: Message, now_us: int) -> None:
        attempts = message.attempts + 1
        endpoint = self._endpoints(message.tenant, message.webhook_id)
        if endpoint is None:
            self._outbox.record_attempt(
                message.message_id, attempts, None, None, "the webhook was deleted"
            )
            return
        refused = destination_refused(endpoint.url, self._allowed) if self._allowed else None
        error: str | None
        if refused:
            delivered, error = False, refused
        else:
            when = datetime.fromtimestamp(now_us / 1_000_000, timezone.utc)
            headers = signed_headers(endpoint.secret, message.message_id, when, message.body)
            delivered, error = self._send(endpoint.url, headers, message.body)
        if delivered:
            self._outbox.record_attempt(message.message_id, attempts, None, now_us, None)
            return
        retry_at = next_attempt(message.created_us, attempts)
        log.warning(
            "aicm webhooks: %s to webhook %r failed (attempt %d, %s): %s",
            message.message_id,
            message.webhook_id,
            attempts,
            "given up" if retry_at is None else "will retry",
            error,
        )
        self._outbox.record_attempt(message.message_id, attempts, retry_at, None, error)
