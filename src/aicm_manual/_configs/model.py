"""Usage configs: what a ``schemas/*.json`` file or ``GET /api/v1/configs/{id}`` holds.

Pure: builds and checks a :class:`UsageConfig` from already-decoded JSON; reading files
and HTTP live in ``_config_sources``. A config looks like::

    {
      "config_id": "openai-chat",
      "description": "Chat completions billed per token",
      "manual_usage_schema": {"input_tokens": "int", "model": "str"},
      "services": [
        {"service_id": "openai::gpt-4o-mini",
         "pricing": {"currency": "USD",
                     "unit": {"input_tokens": {"price": "0.15", "per": 1000000}}}}
      ],
      "handling_config": {...}            (optional, free-form)
    }

Every type string is parsed here, so a bad one fails when the config is loaded and the
error names the file (or config) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .._typestring.nodes import FLOAT, INT, TypeNode, UnionOf
from .._typestring.validator import TypeValidator
from ..errors import ConfigError, ConfigNotFoundError, SchemaError, TypeStringError
from .handling import is_handling_config, parse_handling_config

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
# "vendor::*" stands for every service of a vendor, e.g. any OpenAI model in the llm config.
_SERVICE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/-]{0,120}::\*")
_CURRENCY = re.compile(r"[A-Z]{3}")
_KNOWN_KEYS = frozenset(
    {
        "config_id",
        "description",
        "manual_usage_schema",
        "services",
        "handling_config",
        "version",
        "updated_at",
    }
)


@dataclass(frozen=True)
class Rate:
    """``price`` (exact decimal) in the config's currency per ``per`` units of a field."""

    price: Decimal
    per: int = 1


@dataclass(frozen=True)
class GenaiPricesRef:
    """Price LLM token usage with the ``genai-prices`` package's data for this model.

    ``model`` is None only on a ``vendor::*`` service: the model is then the part of the
    record's service_id after ``::``.
    """

    provider: str
    model: str | None

    def model_for(self, service_id: str) -> str:
        return self.model if self.model is not None else service_id.partition("::")[2]


@dataclass(frozen=True)
class Pricing:
    """Either ``unit`` prices per usage field (cost = sum of usage[field] * price / per) or a
    ``genai_prices`` model reference; ``currency`` applies to unit prices."""

    currency: str = "USD"
    unit: Mapping[str, Rate] = field(default_factory=dict)
    genai_prices: GenaiPricesRef | None = None


@dataclass(frozen=True)
class ServiceConfig:
    service_id: str
    pricing: Pricing | None = None
    description: str | None = None

    @property
    def is_pattern(self) -> bool:
        return self.service_id.endswith("::*")


@dataclass(frozen=True)
class UsageConfig:
    config_id: str
    validator: TypeValidator
    services: tuple[ServiceConfig, ...]
    description: str | None = None
    handling_config: Mapping[str, Any] | None = None
    version: str | None = None
    updated_at: str | None = None
    source: str = field(default="<memory>", compare=False)

    @property
    def manual_usage_schema(self) -> dict[str, str]:
        """Field -> canonical type string."""
        return self.validator.schema

    def find_service(self, service_id: str) -> ServiceConfig | None:
        """The service entry for ``service_id``: an exact entry, else its ``vendor::*`` one."""
        vendor, sep, _ = service_id.partition("::")
        pattern = f"{vendor}::*" if sep else None
        fallback = None
        for service in self.services:
            if service.service_id == service_id:
                return service
            if service.service_id == pattern:
                fallback = service
        return fallback

    def service(self, service_id: str) -> ServiceConfig:
        found = self.find_service(service_id)
        if found is not None:
            return found
        known = ", ".join(repr(s.service_id) for s in self.services) or "none"
        raise ConfigNotFoundError(
            service_id, f"config {self.config_id!r} (its services: {known})", kind="service"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as served by the collector), types in canonical spelling."""
        out: dict[str, Any] = {
            "config_id": self.config_id,
            "manual_usage_schema": self.manual_usage_schema,
            "services": [_service_dict(s) for s in self.services],
        }
        for key in ("description", "handling_config", "version", "updated_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, data: object, *, source: str) -> UsageConfig:
        """Check and build a config; ``source`` (a file path or URL) goes into every error."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a config must be a JSON object")
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown config keys {unknown}")
        config_id = data.get("config_id")
        if not isinstance(config_id, str) or not ID_PATTERN.fullmatch(config_id):
            raise ConfigError(
                f"{source}: config_id {config_id!r} must be 1-128 letters, digits or ._:@- "
                "starting with a letter or digit"
            )
        where = f"{source} (config {config_id!r})"
        schema = data.get("manual_usage_schema")
        if not isinstance(schema, Mapping) or not all(isinstance(v, str) for v in schema.values()):
            raise ConfigError(f"{where}: manual_usage_schema must map field names to type strings")
        try:
            validator = TypeValidator(schema)
        except TypeStringError as exc:
            raise exc.located(source=where) from None
        except SchemaError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        services = data.get("services")
        if not isinstance(services, list) or not services:
            raise ConfigError(f"{where}: services must be a non-empty list")
        parsed = tuple(_service(s, i, where, validator) for i, s in enumerate(services))
        ids = [s.service_id for s in parsed]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: duplicate service_id in services")
        handling = data.get("handling_config")
        if handling is not None and not isinstance(handling, Mapping):
            raise ConfigError(f"{where}: handling_config must be an object")
        if is_handling_config(handling):
            parse_handling_config(handling, where)  # a CostManager's: fail at load, not use
        return cls(
            config_id=config_id,
            validator=validator,
            services=parsed,
            description=_optional_str(data, "description", where),
            handling_config=dict(handling) if handling is not None else None,
            version=_optional_str(data, "version", where, coerce=True),
            updated_at=_optional_str(data, "updated_at", where),
            source=source,
        )


def _optional_str(
    data: Mapping[str, Any], key: str, where: str, coerce: bool = False
) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if coerce and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string")
    return value


def _service(raw: object, index: int, where: str, validator: TypeValidator) -> ServiceConfig:
    here = f"{where}: services[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{here} must be an object")
    unknown = sorted(set(raw) - {"service_id", "pricing", "description"})
    if unknown:
        raise ConfigError(f"{here}: unknown keys {unknown}")
    service_id = raw.get("service_id")
    if not isinstance(service_id, str) or not (
        ID_PATTERN.fullmatch(service_id) or _SERVICE_PATTERN.fullmatch(service_id)
    ):
        raise ConfigError(
            f"{here}: service_id {service_id!r} is not a valid id or 'vendor::*' pattern"
        )
    pricing = raw.get("pricing")
    service = ServiceConfig(
        service_id=service_id,
        pricing=None if pricing is None else _pricing(pricing, f"{here}.pricing", validator),
        description=_optional_str(raw, "description", here),
    )
    ref = None if service.pricing is None else service.pricing.genai_prices
    if ref is not None and ref.model is None and not service.is_pattern:
        raise ConfigError(f"{here}: genai_prices needs a 'model' (only 'vendor::*' may omit it)")
    return service


def _pricing(raw: object, here: str, validator: TypeValidator) -> Pricing:
    if not isinstance(raw, Mapping) or set(raw) - {"currency", "unit", "genai_prices"}:
        raise ConfigError(
            f"{here} must be an object with 'unit' prices (and 'currency') or 'genai_prices'"
        )
    if ("unit" in raw) == ("genai_prices" in raw):
        raise ConfigError(f"{here} needs exactly one of 'unit' and 'genai_prices'")
    currency = raw.get("currency", "USD")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise ConfigError(f"{here}: currency {currency!r} must be a 3-letter ISO 4217 code")
    if "genai_prices" in raw:
        ref = raw["genai_prices"]
        if (
            not isinstance(ref, Mapping)
            or "provider" not in ref
            or set(ref) - {"provider", "model"}
            or not all(isinstance(v, str) and v for v in ref.values())
        ):
            raise ConfigError(f"{here}.genai_prices must be {{'provider': '...', 'model': '...'}}")
        return Pricing(currency, {}, GenaiPricesRef(ref["provider"], ref.get("model")))
    unit = raw["unit"]
    if not isinstance(unit, Mapping) or not unit:
        raise ConfigError(f"{here}: unit must map usage fields to prices")
    types = validator.types
    out: dict[str, Rate] = {}
    for name, rate in unit.items():
        if name not in types:
            raise ConfigError(f"{here}: price for {name!r}, which is not in manual_usage_schema")
        if not _numeric(types[name]):
            raise ConfigError(
                f"{here}: price for {name!r}, whose type {types[name]} is not numeric"
            )
        out[name] = _rate(rate, f"{here}.unit[{name!r}]")
    return Pricing(currency=currency, unit=out)


def _rate(raw: object, here: str) -> Rate:
    if not isinstance(raw, Mapping) or "price" not in raw or set(raw) - {"price", "per"}:
        raise ConfigError(f"{here} must be {{'price': '<decimal string>', 'per': <int>}}")
    price_text, per = raw["price"], raw.get("per", 1)
    # Prices are decimal strings: a JSON float such as 0.1 is already inexact.
    if not isinstance(price_text, str):
        raise ConfigError(f"{here}: price {price_text!r} must be a decimal string like '0.15'")
    try:
        price = Decimal(price_text)
    except InvalidOperation:
        raise ConfigError(f"{here}: price {price_text!r} is not a decimal number") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{here}: price {price_text!r} must be a finite, non-negative number")
    if not isinstance(per, int) or isinstance(per, bool) or per < 1:
        raise ConfigError(f"{here}: per {per!r} must be a positive integer")
    return Rate(price=price, per=per)


def _numeric(node: TypeNode) -> bool:
    if isinstance(node, UnionOf) and node.nullable and len(node.members) == 2:
        node = node.members[0]
    return node in (INT, FLOAT)


def _service_dict(service: ServiceConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"service_id": service.service_id}
    pricing = service.pricing
    if pricing is not None and pricing.genai_prices is not None:
        ref = pricing.genai_prices
        names = {"provider": ref.provider}
        if ref.model is not None:
            names["model"] = ref.model
        out["pricing"] = {"genai_prices": names}
    elif pricing is not None:
        out["pricing"] = {
            "currency": pricing.currency,
            "unit": {
                name: {"price": str(rate.price), "per": rate.per}
                for name, rate in pricing.unit.items()
            },
        }
    if service.description is not None:
        out["description"] = service.description
    return out
