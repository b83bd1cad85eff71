"""Which config checks a record: the tracker's own, the one it names, or the one that
lists its service.

    routes = Routes(source, own_config=None)
    route = routes.get(None, "openai::gpt-5-mini")   # -> Route("llm", ..., validate)

Configs are loaded once per tracker and routes cached, so after a service's first record
no record waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._logging import log
from .._records import check_id
from ..errors import ConfigFetchError
from .model import UsageConfig
from .sources import ConfigSource, all_configs, config_for_service

_MAX_ROUTES = 1024  # service ids come from callers: keep the cache of their routes bounded


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
        if config_id is not None:
            config = self._configs.get(config_id)
            if config is None:
                config = self._configs[config_id] = self.source.get(config_id)
        elif self.own_config is not None:
            config = self.own_config
        else:
            config = config_for_service(self._listing(), service_id)
        if config is not None:
            config.service(service_id)  # raises, naming the config's services
            route = Route(config.config_id, service_id, config.validator.validate)
        else:
            route = Route(None, service_id, None)
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = route
        return route

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
