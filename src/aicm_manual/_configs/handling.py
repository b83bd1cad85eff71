"""A config's ``handling_config``: which client methods a CostManager tracks, and how.

Pure: checks already-decoded JSON and builds a :class:`HandlingConfig`; every problem is
collected and reported at once, each naming its place. The format::

    "handling_config": {
      "tracked_methods": [                        # paths from the client object
        {"method": "chat.completions.create", "usage_extractor": "openai_chat",
         "stream_kwargs": {"stream_options": {"include_usage": true}}},
        "embeddings.create"                       # a bare path takes the defaults below
      ],
      "request_fields": ["user"],                 # call keyword arguments to keep
      "response_fields": [{"key": "id", "path": "id"}],
      "payload_mapping": {"client_customer_key": "request_data.user"},
      "static_payload_fields": {"context.source": "cost-manager"},
      "usage_extractor": null,                    # an api_id of the LLM helpers
      "stream_kwargs": {}                         # defaults for calls made with stream=True
    }

Every key but ``tracked_methods`` is a default that a method entry may override.

Two spellings from the AICostManager SDK's handling configs are accepted as aliases: a
``payload_mapping`` entry ``"config": "config_identifier"`` (the record's config is the
CostManager's own, so it may only restate it and is dropped), and a
``static_payload_fields`` key that is not a record field (``{"static": 1}``), which is
metadata and goes to ``context.<key>``; one that looks like a misspelt record field is an
error instead.
``payload_mapping`` maps record fields (``usage``, ``usage.<name>``, ``service_id``,
``response_id``, ``timestamp``, ``client_customer_key``, ``context``, ``context.<name>``)
to dotted paths into what the call produced: ``request_data``, ``response_data``,
``method``, ``timestamp`` (the call's time) and ``config_identifier``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._llm.usage import API_IDS
from .._protocol import RECORD_KEYS
from ..errors import ConfigError

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_DATA_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_DEFAULT_KEYS = (
    "request_fields",
    "response_fields",
    "payload_mapping",
    "static_payload_fields",
    "usage_extractor",
    "stream_kwargs",
)
_TOP_KEYS = frozenset({"tracked_methods", "description", *_DEFAULT_KEYS})
_METHOD_KEYS = frozenset({"method", *_DEFAULT_KEYS})
# What a handling config may fill in: every record key but the config, which is the
# CostManager's own.
RECORD_FIELDS = RECORD_KEYS - {"config_id"}
_NESTED = ("usage", "context")  # targets that may name one of their keys: usage.input_tokens
SOURCES = frozenset({"request_data", "response_data", "method", "timestamp", "config_identifier"})
# payload_mapping targets that name the record's config (the SDK writes "config").
_CONFIG_ALIASES = frozenset({"config", "config_id"})


@dataclass(frozen=True)
class FieldSpec:
    """Keep the value at ``path`` (dotted; "" is the whole object) under ``key``."""

    key: str
    path: str


@dataclass(frozen=True)
class MethodSpec:
    """How calls of one client method become records."""

    method: str
    request_fields: tuple[FieldSpec, ...] = ()
    response_fields: tuple[FieldSpec, ...] = ()
    payload_mapping: Mapping[str, str] = field(default_factory=dict)
    static_payload_fields: Mapping[str, Any] = field(default_factory=dict)
    usage_extractor: str | None = None
    stream_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HandlingConfig:
    """The tracked methods of a client, by attribute path (``chat.completions.create``)."""

    methods: Mapping[str, MethodSpec]

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<memory>") -> HandlingConfig:
        """Check and build one; ConfigError names ``source`` and lists every problem."""
        return parse_handling_config(data, source)

    @property
    def prefixes(self) -> frozenset[str]:
        """Attribute paths that lead to a tracked method (``chat``, ``chat.completions``)."""
        out: set[str] = set()
        for method in self.methods:
            parts = method.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts)))
        return frozenset(out)


def is_handling_config(raw: object) -> bool:
    """True for a handling_config meant for a CostManager (one that has tracked_methods);
    other configs may keep free-form handling notes."""
    return isinstance(raw, Mapping) and "tracked_methods" in raw


def parse_handling_config(raw: object, where: str) -> HandlingConfig:
    """Check ``raw`` and build a :class:`HandlingConfig`; ConfigError lists every problem."""
    problems: list[str] = []
    here = f"{where}: handling_config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{here} must be an object")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown} (known: {sorted(_TOP_KEYS)})")
    defaults = {k: raw[k] for k in _DEFAULT_KEYS if k in raw}
    entries = raw.get("tracked_methods")
    methods: dict[str, MethodSpec] = {}
    if not isinstance(entries, list) or not entries:
        problems.append("tracked_methods must be a non-empty list")
        entries = []
    for index, entry in enumerate(entries):
        spec = _method(entry, f"tracked_methods[{index}]", defaults, problems)
        if spec is None:
            continue
        if spec.method in methods:
            problems.append(f"tracked_methods[{index}]: {spec.method!r} is listed twice")
        methods[spec.method] = spec
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{here} is invalid ({len(problems)} problems):\n{lines}")
    return HandlingConfig(methods)


def _method(
    entry: object, here: str, defaults: Mapping[str, Any], problems: list[str]
) -> MethodSpec | None:
    if isinstance(entry, str):
        entry = {"method": entry}
    if not isinstance(entry, Mapping):
        problems.append(f"{here} must be a method path or an object with 'method'")
        return None
    unknown = sorted(set(entry) - _METHOD_KEYS)
    if unknown:
        problems.append(f"{here}: unknown keys {unknown} (known: {sorted(_METHOD_KEYS)})")
    method = entry.get("method")
    if not isinstance(method, str) or not _PATH.fullmatch(method):
        problems.append(f"{here}: method {method!r} must be a dotted attribute path")
        return None
    here = f"{here} ({method})"
    settings = {**defaults, **{k: v for k, v in entry.items() if k != "method"}}
    before = len(problems)
    extractor = settings.get("usage_extractor")
    if extractor is not None and extractor not in API_IDS:
        problems.append(f"{here}: usage_extractor {extractor!r} is not one of {list(API_IDS)}")
    mapping = _mapping(settings.get("payload_mapping", {}), f"{here}: payload_mapping", problems)
    static = settings.get("static_payload_fields", {})
    if not isinstance(static, Mapping):
        problems.append(f"{here}: static_payload_fields must be an object")
        static = {}
    aliased = {k: _static_target(k, f"{here}: static_payload_fields", problems) for k in static}
    static = {aliased[k]: v for k, v in static.items() if aliased[k] is not None}
    for target in static:
        _target(target, f"{here}: static_payload_fields", problems)
    targets = {t.partition(".")[0] for t in (*mapping, *static)}
    if extractor is not None and "usage" in targets:
        problems.append(
            f"{here}: usage comes from usage_extractor {extractor!r}; "
            "payload_mapping and static_payload_fields cannot set it"
        )
    if extractor is None and "usage" not in targets:
        problems.append(
            f"{here}: nothing produces the usage: set usage_extractor, or map 'usage' "
            "(or 'usage.<field>') in payload_mapping"
        )
    stream_kwargs = settings.get("stream_kwargs", {})
    if not isinstance(stream_kwargs, Mapping) or not all(isinstance(k, str) for k in stream_kwargs):
        problems.append(f"{here}: stream_kwargs must be an object of keyword arguments")
        stream_kwargs = {}
    request = _fields(settings.get("request_fields", []), f"{here}: request_fields", problems)
    response = _fields(settings.get("response_fields", []), f"{here}: response_fields", problems)
    if len(problems) > before:
        return None
    return MethodSpec(
        method=method,
        request_fields=request,
        response_fields=response,
        payload_mapping=mapping,
        static_payload_fields=dict(static),
        usage_extractor=extractor,
        stream_kwargs=dict(stream_kwargs),
    )


def _fields(raw: object, here: str, problems: list[str]) -> tuple[FieldSpec, ...]:
    if not isinstance(raw, list):
        problems.append(f"{here} must be a list")
        return ()
    out = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            item = {"key": item.rsplit(".", 1)[-1], "path": item}
        if (
            not isinstance(item, Mapping)
            or set(item) != {"key", "path"}
            or not isinstance(item["key"], str)
            or not item["key"]
            or not isinstance(item["path"], str)
            or not (item["path"] == "" or _DATA_PATH.fullmatch(item["path"]))
        ):
            problems.append(
                f"{here}[{index}] must be a dotted path or {{'key': name, 'path': dotted path}}"
            )
            continue
        out.append(FieldSpec(item["key"], item["path"]))
    return tuple(out)


def _mapping(raw: object, here: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append(f"{here} must be an object")
        return {}
    out = {}
    for target, path in raw.items():
        if target in _CONFIG_ALIASES:
            if path != "config_identifier":
                problems.append(
                    f"{here}[{target!r}]: the record's config is the CostManager's own; map it "
                    f"from 'config_identifier' or leave it out (got {path!r})"
                )
            continue
        if not _target(target, here, problems):
            continue
        source = path.partition(".")[0] if isinstance(path, str) else None
        if not isinstance(path, str) or not _DATA_PATH.fullmatch(path) or source not in SOURCES:
            problems.append(
                f"{here}[{target!r}]: {path!r} must be a dotted path starting with one of "
                f"{sorted(SOURCES)}"
            )
            continue
        out[target] = path
    return out


def _target(target: object, here: str, problems: list[str]) -> bool:
    if isinstance(target, str):
        head, dot, rest = target.partition(".")
        if head in RECORD_FIELDS and (not dot or (head in _NESTED and rest and "." not in rest)):
            return True
    problems.append(
        f"{here}: {target!r} is not a record field "
        f"({', '.join(sorted(RECORD_FIELDS))}, usage.<name>, context.<name>)"
    )
    return False


def _static_target(target: object, here: str, problems: list[str]) -> object | None:
    """A static field's target: a record field as written, else ``context.<key>``; None
    (with a problem) for a near miss of a record field."""
    if not isinstance(target, str) or "." in target or target in RECORD_FIELDS:
        return target  # checked with the other targets
    close = difflib.get_close_matches(target, sorted(RECORD_FIELDS), n=1, cutoff=0.8)
    if close:
        problems.append(
            f"{here}: {target!r} is not a record field (did you mean {close[0]!r}? other "
            f"keys go to context.{target})"
        )
        return None
    return f"context.{target}"
