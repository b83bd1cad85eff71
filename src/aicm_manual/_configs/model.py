"""Usage configs: what a ``schemas/*.json`` file or ``GET /api/v1/configs/{id}`` holds.

Pure: builds and checks a :class:`UsageConfig` from already-decoded JSON; reading files
and HTTP live in ``sources``. The document's shape is checked by the pydantic models of
``documents`` (also the source of ``schemas/config.schema.json``); what needs the parsed
type strings is checked here. A config looks like::

    {
      "config_id": "openai-chat",
      "description": "Chat completions billed per token",
      "manual_usage_schema": {"input_tokens": "int", "model": "str"},
      "extra_fields": "forbid",           (or "allow": unknown usage fields pass unchecked)
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
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._typestring.nodes import FLOAT, INT, TypeNode, UnionOf
from .._typestring.validator import ExtraFields, TypeValidator
from ..errors import ConfigError, ConfigNotFoundError, SchemaError, TypeStringError
from .handling import is_handling_config, parse_handling_config

if TYPE_CHECKING:
    from .documents import PricingDocument, ServiceDocument

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")


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
    def extra_fields(self) -> ExtraFields:
        """``"forbid"`` or ``"allow"``: whether usage fields outside the schema pass."""
        return self.validator.extra_fields

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
        if self.extra_fields != "forbid":
            out["extra_fields"] = self.extra_fields
        for key in ("description", "handling_config", "version", "updated_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @staticmethod
    def json_schema() -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of a config file, as shipped in
        ``schemas/jsonschema/config.schema.json``."""
        from .documents import config_json_schema

        return config_json_schema()

    @classmethod
    def from_dict(cls, data: object, *, source: str) -> UsageConfig:
        """Check and build a config; ``source`` (a file path or URL) goes into every error."""
        # pydantic is loaded with the first config, not with the package.
        from .documents import parse_document

        doc = parse_document(data, source=source)
        where = f"{source} (config {doc.config_id!r})"
        try:
            validator = TypeValidator(doc.manual_usage_schema, extra_fields=doc.extra_fields)
        except TypeStringError as exc:
            raise exc.located(source=where) from None
        except SchemaError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        parsed = tuple(
            _service(s, f"{where}: services[{i}]", validator) for i, s in enumerate(doc.services)
        )
        ids = [s.service_id for s in parsed]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ConfigError(f"{where}: duplicate service_id in services: {twice}")
        handling = doc.handling_config
        if is_handling_config(handling):
            parse_handling_config(handling, where)  # a CostManager's: fail at load, not use
        return cls(
            config_id=doc.config_id,
            validator=validator,
            services=parsed,
            description=doc.description,
            handling_config=dict(handling) if handling is not None else None,
            version=None if doc.version is None else str(doc.version),
            updated_at=doc.updated_at,
            source=source,
        )


def _service(doc: ServiceDocument, here: str, validator: TypeValidator) -> ServiceConfig:
    pricing = doc.pricing
    service = ServiceConfig(
        service_id=doc.service_id,
        pricing=None if pricing is None else _pricing(pricing, f"{here}.pricing", validator),
        description=doc.description,
    )
    ref = None if service.pricing is None else service.pricing.genai_prices
    if ref is not None and ref.model is None and not service.is_pattern:
        raise ConfigError(f"{here}: genai_prices needs a 'model' (only 'vendor::*' may omit it)")
    return service


def _pricing(doc: PricingDocument, here: str, validator: TypeValidator) -> Pricing:
    if doc.genai_prices is not None:
        ref = doc.genai_prices
        return Pricing(doc.currency, {}, GenaiPricesRef(ref.provider, ref.model))
    types = validator.types
    out: dict[str, Rate] = {}
    for name, rate in (doc.unit or {}).items():
        if name not in types:
            raise ConfigError(f"{here}: price for {name!r}, which is not in manual_usage_schema")
        if not _numeric(types[name]):
            raise ConfigError(
                f"{here}: price for {name!r}, whose type {types[name]} is not numeric"
            )
        # The document's pattern admits only finite, non-negative decimal spellings.
        out[name] = Rate(price=Decimal(rate.price), per=rate.per)
    return Pricing(currency=doc.currency, unit=out)


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


def parse_pricing(data: object, *, source: str) -> Pricing:
    """A pricing object as a config's service carries it (a tenant price rule's), checked
    by the same document model; ConfigError names every problem. Unit prices are not
    checked against a schema here: a field that is missing or not a number leaves a record
    unpriced, with that reason."""
    from pydantic import ValidationError

    from .documents import PricingDocument, problems_of

    try:
        doc = PricingDocument.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(problems_of(exc, data))) from None
    if doc.genai_prices is not None:
        ref = doc.genai_prices
        return Pricing(doc.currency, {}, GenaiPricesRef(ref.provider, ref.model))
    unit = {name: Rate(Decimal(r.price), r.per) for name, r in (doc.unit or {}).items()}
    return Pricing(currency=doc.currency, unit=unit)
