"""The client's one HTTP module: a one-shot transport over ``requests``.

Retries, caching and the meaning of statuses live above this layer; here a request goes
out once and comes back as an :class:`HttpResponse` or a :class:`TransportError`, so no
``requests`` exception crosses this boundary. The API key enters only as a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._secret import Secret
from .errors import TransportError

if TYPE_CHECKING:
    import requests

USER_AGENT = "aicm-manual/0.1"
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased

    def json(self) -> Any:
        try:
            # pydantic-core's parser: a 1,000-result answer in a fraction of json's time
            # (imported here, not with aicm_manual).
            from pydantic_core import from_json

            return from_json(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransportError(f"answer is not valid JSON: {exc}", self.status) from exc


class HttpClient:
    """Sends one request at a time over a pooled session."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        # requests is slow to import; only processes that talk HTTP pay for it.
        import requests

        self._requests = requests
        self._timeout = timeout
        self._session: requests.Session = requests.Session()

    def request(
        self,
        method: str,
        url: str,
        *,
        api_key: Secret | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if headers:
            sent.update(headers)
        try:
            resp = self._session.request(
                method,
                url,
                headers=sent,
                data=body,
                # Given as auth, the key also spares every request requests' search for a
                # ~/.netrc (two file lookups per request, an eighth of a sender's time).
                auth=_Bearer(api_key),
                timeout=self._timeout if timeout is None else timeout,
                allow_redirects=False,
            )
        except self._requests.RequestException as exc:
            # The key travels in a header, which requests never puts in its messages.
            raise TransportError(f"{method} {url} failed: {exc}") from exc
        headers_out = {k.lower(): v for k, v in resp.headers.items()}
        return HttpResponse(resp.status_code, resp.content, headers_out)

    def close(self) -> None:
        self._session.close()


class _Bearer:
    """The key as requests' ``auth`` (any callable that prepares a request will do)."""

    def __init__(self, key: Secret | None) -> None:
        self._key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._key is not None:
            r.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return r

    def __repr__(self) -> str:  # never the key
        return "_Bearer(***)"
