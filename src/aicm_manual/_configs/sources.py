"""Where configs come from: a local schemas directory, or the collector over HTTP.

    source = DirectoryConfigSource("schemas")
    config = source.get("openai-chat")

The HTTP source keeps each config for a TTL and then revalidates it with its ETag
(``If-None-Match`` -> 304), so a process asks the collector at most once per TTL per
config. Sources for the same (base URL, key, TTL) are shared process-wide.

Every config fetched is also kept on disk (the last good copy, with its ETag) under
``$XDG_CACHE_HOME/aicm/configs`` (default ``~/.cache/aicm/configs``): a process that
starts while the collector is down uses that copy, and revalidates it with its ETag once
the collector answers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import cachetools

from .._http import HttpClient
from .._secret import Secret
from ..errors import ConfigError, ConfigFetchError, ConfigNotFoundError, TransportError
from .model import ID_PATTERN, UsageConfig

log = logging.getLogger("aicm_manual.configs")


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """Where last good config copies are kept: ``$XDG_CACHE_HOME/aicm/configs``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "aicm" / "configs"


def _short(error: TransportError) -> str:
    """A transport error in a few words, on one line."""
    text = str(error)
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("Errno 111", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "host not found"),
    ):
        if needle in text:
            return words
    text = " ".join(text.split())
    return text[:160]


class ConfigSource(Protocol):
    """Anything that returns the config for an id or raises ConfigNotFoundError."""

    def get(self, config_id: str) -> UsageConfig: ...


def all_configs(source: ConfigSource) -> list[UsageConfig]:
    """Every config of a source that can list them (``all()``); [] for one that cannot."""
    listing: Callable[[], list[UsageConfig]] | None = getattr(source, "all", None)
    return [] if listing is None else listing()


class DirectoryConfigSource:
    """Configs stored one per file as ``<dir>/<config_id>.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def get(self, config_id: str) -> UsageConfig:
        if not isinstance(config_id, str) or not ID_PATTERN.fullmatch(config_id):
            raise ConfigNotFoundError(str(config_id), f"{self.path} (not a valid config id)")
        self._check_dir()
        file = self.path / f"{config_id}.json"
        if not file.is_file():
            raise ConfigNotFoundError(config_id, str(self.path))
        return self._load(file)

    def all(self) -> list[UsageConfig]:
        """Every config in the directory, sorted by id; any bad file raises."""
        self._check_dir()
        return [self._load(f) for f in sorted(self.path.glob("*.json"))]

    def _check_dir(self) -> None:
        if not self.path.is_dir():
            raise ConfigError(f"schemas directory {str(self.path)!r} does not exist")

    @staticmethod
    def _load(file: Path) -> UsageConfig:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
        config = UsageConfig.from_dict(data, source=str(file))
        if config.config_id != file.stem:
            raise ConfigError(
                f"{file}: config_id {config.config_id!r} does not match the file name {file.stem!r}"
            )
        return config


class HttpConfigSource:
    """``GET {api_base}/api/v1/configs/{config_id}`` with a TTL cache and ETag revalidation."""

    def __init__(
        self,
        api_base: str,
        api_key: Secret | None,
        *,
        ttl: float,
        client: HttpClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_dir: Path | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        scope = f"{self.api_base} {'' if api_key is None else api_key.digest}".encode()
        self._disk = (cache_dir or default_cache_dir()) / hashlib.sha256(scope).hexdigest()[:16]
        self._key = api_key
        self._client = client if client is not None else HttpClient()
        self._fresh: cachetools.TTLCache[str, UsageConfig] = cachetools.TTLCache(
            maxsize=256, ttl=ttl, timer=clock
        )
        self._etags: dict[str, tuple[str, UsageConfig]] = {}
        self._listing: tuple[float, list[UsageConfig]] | None = None
        self._ttl = ttl
        self._clock = clock
        # Held across the request on purpose: trackers starting together for one config
        # then cause one request, not one each. Config loads are never on the hot path.
        self._lock = threading.Lock()
        self.requests_sent = 0

    def get(self, config_id: str) -> UsageConfig:
        if not isinstance(config_id, str) or not ID_PATTERN.fullmatch(config_id):
            raise ConfigNotFoundError(str(config_id), f"{self.api_base} (not a valid config id)")
        with self._lock:
            config = self._fresh.get(config_id)
            if config is None:
                config = self._fetch(config_id)
                self._fresh[config_id] = config
            return config

    def all(self) -> list[UsageConfig]:
        """Every config the collector serves (``GET /api/v1/configs``), kept for the TTL."""
        with self._lock:
            if self._listing is not None and self._clock() - self._listing[0] < self._ttl:
                return self._listing[1]
            url = f"{self.api_base}/api/v1/configs"
            self.requests_sent += 1
            try:
                resp = self._client.request("GET", url, api_key=self._key)
            except TransportError as exc:
                raise ConfigFetchError(str(exc), exc.status) from exc
            if resp.status != 200:
                raise ConfigFetchError(f"GET {url}: HTTP {resp.status}", resp.status)
            listing = resp.json()
            items = listing.get("configs") if isinstance(listing, dict) else None
            if not isinstance(items, list):
                raise ConfigError(f'{url}: expected {{"configs": [...]}}')
            configs = [UsageConfig.from_dict(item, source=url) for item in items]
            self._listing = (self._clock(), configs)
            return configs

    def _fetch(self, config_id: str) -> UsageConfig:
        url = f"{self.api_base}/api/v1/configs/{quote(config_id, safe='')}"
        known = self._etags.get(config_id) or self._load_copy(config_id)
        headers = {"If-None-Match": known[0]} if known and known[0] else None
        self.requests_sent += 1
        try:
            resp = self._client.request("GET", url, api_key=self._key, headers=headers)
        except TransportError as exc:
            return self._offline(config_id, known, _short(exc), exc, None)
        if resp.status == 304 and known:
            self._etags[config_id] = known
            return known[1]
        if resp.status == 200:
            config = UsageConfig.from_dict(resp.json(), source=url)
        elif resp.status == 404:
            raise ConfigNotFoundError(config_id, self.api_base)
        elif resp.status in (401, 403):
            why = (
                "the collector asks for an API key and none was given (set aicm_api_key or "
                "AICM_API_KEY)"
                if self._key is None
                else "the collector refused the API key"
            )
            raise ConfigFetchError(f"GET {url}: {why} (HTTP {resp.status})", resp.status)
        elif resp.status >= 500 or resp.status in (408, 429):
            return self._offline(config_id, known, f"HTTP {resp.status}", None, resp.status)
        else:
            raise ConfigFetchError(f"GET {url}: HTTP {resp.status}", resp.status)
        if config.config_id != config_id:
            raise ConfigError(f"{url}: answered with config {config.config_id!r}")
        etag = resp.headers.get("etag") or ""
        self._etags[config_id] = (etag, config)
        self._save_copy(config_id, etag, resp.body)
        return config

    def _offline(
        self,
        config_id: str,
        known: tuple[str, UsageConfig] | None,
        why: str,
        exc: TransportError | None,
        status: int | None,
    ) -> UsageConfig:
        """The collector cannot answer: the last good copy, or one clear error."""
        if known is not None:
            log.warning(
                "aicm: cannot fetch config %r from %s (%s); using the copy saved before",
                config_id,
                self.api_base,
                why,
            )
            return known[1]
        message = (
            f"cannot fetch config {config_id!r} from {self.api_base} ({why}) and no copy of "
            f"it was saved before; to run without the collector, pass schemas_dir= (or set "
            f"AICM_SCHEMAS_DIR) to a folder holding {config_id}.json"
        )
        raise ConfigFetchError(message, status) from exc

    def _copy_path(self, config_id: str) -> Path:
        return self._disk / f"{config_id}.json"

    def _load_copy(self, config_id: str) -> tuple[str, UsageConfig] | None:
        file = self._copy_path(config_id)
        try:
            saved = json.loads(file.read_text(encoding="utf-8"))
            config = UsageConfig.from_dict(saved["config"], source=str(file))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            log.warning("aicm: ignoring the saved copy %s: %s", file, exc)
            return None
        if config.config_id != config_id:
            return None
        return str(saved.get("etag") or ""), config

    def _save_copy(self, config_id: str, etag: str, body: bytes) -> None:
        file = self._copy_path(config_id)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            data = {"etag": etag, "config": json.loads(body)}
            partial = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(data), encoding="utf-8")
            os.replace(partial, file)  # a reader never sees half a file
        except (OSError, ValueError) as exc:
            log.warning("aicm: cannot save a copy of config %r in %s: %s", config_id, file, exc)

    def close(self) -> None:
        self._client.close()


class _SharedSources:
    """The process-wide HTTP sources, one per (base URL, key, TTL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[tuple[str, Secret | None, float], HttpConfigSource] = {}

    def get(self, api_base: str, api_key: Secret | None, ttl: float) -> HttpConfigSource:
        key = (api_base, api_key, ttl)
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                source = self._sources[key] = HttpConfigSource(api_base, api_key, ttl=ttl)
            return source

    def reset(self) -> None:
        with self._lock:
            for source in self._sources.values():
                source.close()
            self._sources.clear()


_shared = _SharedSources()


def shared_http_source(api_base: str, api_key: Secret | None, ttl: float) -> HttpConfigSource:
    return _shared.get(api_base, api_key, ttl)


def reset_shared_config_sources() -> None:
    """Forget every cached config and close shared connections (for tests)."""
    _shared.reset()
