"""Which config checks a record: the one it names, else the one that lists its service.
One rule for the client and the collector, so both file a record alike.

    config = config_for_record(None, "openai::gpt-5-mini", named, listing)   # -> llm
    routes = Routes(source, own_config=None)   # the client's cache of that rule

Configs are loaded once per tracker and routes cached, so after a service's first record
no record waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._logging import log
from .._records import check_id
from ..errors import ConfigFetchError
from .handling import is_handling_config
from .model import UsageConfig
from .sources import ConfigSource, all_configs

# Service ids come from callers, so caches of routes are bounded (then start over).
MAX_CACHED_ROUTES = 4096


def config_for_service(configs: Iterable[UsageConfig], service_id: str) -> UsageConfig | None:
    """The config listing ``service_id``: one with an exact entry wins over a ``vendor::*``
    one; None when no config lists it."""
    fallback: UsageConfig | None = None
    client_fallback: UsageConfig | None = None
    for config in configs:
        found = config.find_service(service_id)
        if found is not None and found.service_id == service_id:
            return config
        if found is None:
            continue
        # A CostManager's config (one with tracked_methods) is for its client's records;
        # a manual record matching only by vendor goes to a plain config such as llm.
        if is_handling_config(config.handling_config):
            client_fallback = client_fallback or config
        elif fallback is None:
            fallback = config
    return fallback or client_fallback


def ambiguous_services(configs: Iterable[UsageConfig]) -> list[tuple[str, list[str], str]]:
    """The service entries ``config_for_service`` cannot settle by its rule, as (entry, the
    config ids listing it, the one that takes its records): an exact entry in several
    configs, or a ``vendor::*`` entry in several plain configs (or, with no plain one, in
    several CostManager configs). A ``vendor::*`` entry in one plain config and in
    CostManager configs is no ambiguity: the plain config takes the manual records."""
    ordered = list(configs)
    listed: dict[str, list[UsageConfig]] = {}
    for config in ordered:
        for service in config.services:
            listed.setdefault(service.service_id, []).append(config)
    found = []
    for entry, holders in listed.items():
        if len(holders) < 2:
            continue
        if entry.endswith("*"):
            plain = [c for c in holders if not is_handling_config(c.handling_config)]
            if len(plain) == 1:
                continue
        # "vendor::" names no model, so only "vendor::*" entries can match it.
        winner = config_for_service(ordered, entry.removesuffix("*"))
        found.append(
            (entry, [c.config_id for c in holders], "" if winner is None else winner.config_id)
        )
    return found


def config_for_record(
    config_id: str | None,
    service_id: str,
    named: Callable[[str], UsageConfig],
    listing: Callable[[], Iterable[UsageConfig]],
) -> UsageConfig | None:
    """The config that checks (and prices) a record. A record naming a config is checked by
    it, and the config must list its service; one without is checked by the config listing
    its service (``config_for_service``), or by none. Raises ConfigNotFoundError."""
    if config_id is None:
        return config_for_service(listing(), service_id)
    config = named(config_id)
    config.service(service_id)  # raises, naming the config's services
    return config


def remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """Cache ``value`` under ``key``, starting over when the cache is full."""
    if len(cache) >= MAX_CACHED_ROUTES:
        cache.clear()
    cache[key] = value
    return value


_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Route:
    """Where records of one (config, service) go and how they are checked."""

    config_id: str | None  # None: no config lists the service; the collector decides
    service_id: str
    validate: Callable[[Any], None] | None


class Routes:
    def __init__(self, source: ConfigSource, own_config: UsageConfig | None) -> None:
        self.source = source
        self.own_config = own_config
        self._routes: dict[tuple[str | None, str], Route] = {}
        self._configs: dict[str, UsageConfig] = {}
        if own_config is not None:
            self._configs[own_config.config_id] = own_config
        self._catalog: list[UsageConfig] | None = None

    def get(self, config_id: str | None, service_id: str) -> Route:
        """The route for a record; raises ConfigNotFoundError for an unknown config or a
        service its config does not list."""
        key = (config_id, service_id)
        route = self._routes.get(key)
        if route is not None:
            return route
        check_id("service_id", service_id)
        config: UsageConfig | None
        if config_id is None and self.own_config is not None:
            config = self.own_config  # a tracker's own config checks its config-less records
            config.service(service_id)
        else:
            config = config_for_record(config_id, service_id, self._named, self._listing)
        if config is not None:
            route = Route(config.config_id, service_id, config.validator.validate)
        else:
            route = Route(None, service_id, None)
        return remember(self._routes, key, route)

    def _named(self, config_id: str) -> UsageConfig:
        config = self._configs.get(config_id)
        if config is None:
            config = self._configs[config_id] = self.source.get(config_id)
        return config

    def _listing(self) -> list[UsageConfig]:
        if self._catalog is None:
            # One listing per tracker: later records never wait on the network for it.
            try:
                self._catalog = all_configs(self.source)
            except ConfigFetchError as exc:
                log.warning(
                    "aicm: cannot list configs (%s); records without a config_id are sent "
                    "unchecked and the collector checks them",
                    exc,
                )
                self._catalog = []
        return self._catalog
