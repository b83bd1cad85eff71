"""Dashboard sessions: the signing secret, the signed session cookie and CSRF tokens.

    sessions = Sessions(secret, lifetime_s=12 * 3600)
    cookie = sessions.issue("acme", key_digest(key))       # after the key was checked
    claim = sessions.read(cookie)                          # None: forged, expired or garbled

The cookie carries the tenant, a random nonce and the key's SHA-256 digest masked with a
pad derived from the secret and the nonce, so the cookie shows neither the key nor its
digest. Every request looks the digest up again: a revoked key, a key moved to another
tenant or one that lost the read scope ends its sessions at once. CSRF tokens are HMACs
of a per-browser nonce (the session's, or a pre-login cookie's) under the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from ...errors import ConfigError
from .secret import MIN_SECRET_CHARS

DEFAULT_LIFETIME_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Claim:
    """What a valid session cookie says: whose tenant, which key (by digest), its nonce."""

    tenant: str
    key_digest: str
    nonce: str


class Sessions:
    """Issues and reads session cookies and CSRF tokens under one secret.

    ``clock`` (seconds since the epoch) is injected so tests can move past the expiry.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(f"the dashboard secret must have at least {MIN_SECRET_CHARS} bytes")
        self.lifetime_s = lifetime_s
        self._secret = secret
        self._clock = clock

        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(
            secret, salt="aicm-dashboard-session", signer=Signer
        )

    def issue(self, tenant: str, key_digest: str) -> str:
        nonce = secrets.token_urlsafe(16)
        masked = _xor(bytes.fromhex(key_digest), self._pad(nonce))
        payload = {"t": tenant, "n": nonce, "k": base64.urlsafe_b64encode(masked).decode()}
        return str(self._serializer.dumps(payload))

    def read(self, cookie: str | None) -> Claim | None:
        """The claim of a cookie this secret signed less than ``lifetime_s`` ago, else None."""
        if not cookie:
            return None
        try:
            payload, signed = self._serializer.loads(
                cookie, max_age=self.lifetime_s, return_timestamp=True
            )
            signed_at: float = signed.timestamp()
        except (BadSignature, ValueError, TypeError):
            return None
        if signed_at > self._clock() + 60:  # signed "in the future": not by this clock
            return None
        try:
            tenant, nonce, masked = payload["t"], payload["n"], payload["k"]
            digest = _xor(base64.urlsafe_b64decode(masked), self._pad(nonce)).hex()
        except (KeyError, TypeError, ValueError):
            return None
        if not (isinstance(tenant, str) and len(digest) == 64):
            return None
        return Claim(tenant, digest, nonce)

    @staticmethod
    def new_nonce() -> str:
        """A fresh per-browser nonce for the pre-sign-in CSRF cookie."""
        return secrets.token_urlsafe(16)

    def csrf_token(self, nonce: str) -> str:
        """The token a form posted by the browser holding ``nonce`` must carry."""
        mac = hmac.new(self._secret, b"csrf:" + nonce.encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)

    def _pad(self, nonce: str) -> bytes:
        return hmac.new(self._secret, b"key-pad:" + nonce.encode(), hashlib.sha256).digest()


def _xor(data: bytes, pad: bytes) -> bytes:
    if len(data) != len(pad):
        raise ValueError("masked digest of the wrong length")
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))
