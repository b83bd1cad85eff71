"""The OpenAPI 3.1 document served at /api/v1/openapi.json (kept beside the routes it describes).

Every answer's schema is generated from the Struct the route encodes (``_wire``), so the
document cannot drift from what is sent; requests and parameters are described here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._protocol import MAX_RECORDS_PER_REQUEST
from .._records import MAX_ID_LENGTH
from ._wire import ANSWERS

_REF = "#/components/schemas/{name}"
_, _SCHEMAS = msgspec.json.schema_components(ANSWERS, ref_template=_REF)


def _json(name: str, description: str = "ok") -> dict[str, Any]:
    """A JSON answer whose body is the ``_wire`` Struct called ``name``."""
    assert name in _SCHEMAS, name
    ref = {"$ref": _REF.format(name=name)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


_ERROR = _json("ErrorAnswer", "error")
_RETRY = {
    **_ERROR,
    "description": "storage unavailable; retry after the given seconds",
    "headers": {"Retry-After": {"schema": {"type": "string"}}},
}
_AUTH_ERRORS = {"401": _ERROR, "403": _ERROR, "503": _RETRY}
_TIME = {"type": "string", "format": "date-time"}
_RECORD = {
    "type": "object",
    "required": ["service_id", "response_id", "timestamp", "usage"],
    "properties": {
        # Absent or null: the collector finds the config listing service_id, if any.
        "config_id": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "service_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "response_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "timestamp": _TIME,
        "usage": {"type": "object"},
        "client_customer_key": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "context": {"type": "object"},
        # true: the client filled the timestamp in; a resent record is then the same one
        "timestamp_defaulted": {"type": "boolean"},
    },
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _get(summary: str, answer: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": params or [],
            "responses": {
                "200": _json(answer),
                "400": _ERROR,
                "404": _ERROR,
                **_AUTH_ERRORS,
            },
        }
    }


def _conditional(path: dict[str, Any]) -> dict[str, Any]:
    """Declare the ETag / If-None-Match / 304 exchange of a cached GET."""
    get = path["get"]
    get["parameters"] = [
        *get["parameters"],
        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    get["responses"]["200"]["headers"] = {"ETag": {"schema": {"type": "string"}}}
    get["responses"]["304"] = {"description": "not modified"}
    return path


_WINDOW = [_query("from", _TIME), _query("to", _TIME)]
_GROUP = _query("group_by", {"enum": ["client_customer_key", "service_id"]})

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "aicm-manual collector", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": _SCHEMAS,
    },
    "paths": {
        "/api/v1/configs": _conditional(_get("Every config", "ConfigList")),
        "/api/v1/configs/{config_id}": {
            "get": {
                **_get("One config", "Config")["get"],
                "parameters": [
                    {
                        "name": "config_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        "/api/v1/track": {
            "post": {
                "summary": "Store usage records once; one result per record, in order",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["tracked"],
                                "properties": {
                                    "tracked": {
                                        "type": "array",
                                        "items": _RECORD,
                                        "minItems": 1,
                                        "maxItems": MAX_RECORDS_PER_REQUEST,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("TrackAnswer", "every record accepted or a duplicate"),
                    "207": _json("TrackAnswer", "some records rejected or in conflict"),
                    "400": _ERROR,
                    "413": _ERROR,
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/v1/events": _get(
            "Events in storage order (keyset pagination by cursor)",
            "EventList",
            [
                _query("service_id", {"type": "string"}),
                _query("client_customer_key", {"type": "string"}),
                *_WINDOW,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                _query("cursor", {"type": "integer", "minimum": 0, "maximum": 2**62}),
            ],
        ),
        "/api/v1/events/{response_id}": {
            "get": {
                **_get("The events with this response_id", "EventsOfId")["get"],
                "parameters": [
                    {
                        "name": "response_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        "/api/v1/costs/summary": _get(
            "Cost per customer or service", "Summary", [_GROUP, *_WINDOW]
        ),
        "/api/v1/usage": _get(
            "Events and cost per time bucket",
            "UsageAnswer",
            [_query("bucket", {"enum": ["hour", "day", "month"]}), _GROUP, *_WINDOW],
        ),
        "/api/v1/keys": _get("The key's tenant's keys (admin scope)", "KeyList"),
        "/api/v1/keys/{ref}": {
            "delete": {
                "summary": "Revoke one of the tenant's keys (admin scope)",
                "security": [{"bearer": []}],
                "parameters": [_path("ref")],
                "responses": {
                    "200": _json("Revoked"),
                    "400": _ERROR,
                    "404": _ERROR,
                    **_AUTH_ERRORS,
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("Health")}}},
        "/metrics": {
            "get": {
                "summary": "Prometheus text metrics",
                "responses": {
                    "200": {"description": "ok", "content": {"text/plain": {"schema": {}}}}
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness (storage reachable)",
                "responses": {"200": _json("Health", "ready"), "503": _ERROR},
            }
        },
    },
}
