"""The OpenAPI 3.1 document served at /api/v1/openapi.json (kept beside the routes it describes)."""

from __future__ import annotations

from typing import Any

from .._protocol import MAX_RECORDS_PER_REQUEST
from .._records import MAX_ID_LENGTH

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}
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
    },
}
_RESULT = {
    "type": "object",
    "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer"},
        "response_id": {"type": ["string", "null"]},
        "status": {"enum": ["accepted", "duplicate", "rejected", "conflict"]},
        "errors": {"type": "array", "items": {"type": "string"}},
        "cost": {"type": "string"},
        "currency": {"type": "string"},
    },
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _get(summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": params or [],
            "responses": {
                "200": {"description": "ok", "content": {"application/json": {"schema": {}}}},
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
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/configs": _conditional(_get("Every config")),
        "/api/v1/configs/{config_id}": {
            "get": {
                **_get("One config")["get"],
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
                    "200": {
                        "description": "every record accepted or a duplicate",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "results": {"type": "array", "items": _RESULT},
                                        "summary": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    "207": {
                        "description": "some records rejected or in conflict",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "results": {"type": "array", "items": _RESULT},
                                        "summary": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    "400": _ERROR,
                    "413": _ERROR,
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/v1/events": _get(
            "Events in storage order (keyset pagination by cursor)",
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
                **_get("The events with this response_id")["get"],
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
        "/api/v1/costs/summary": _get("Cost per customer or service", [_GROUP, *_WINDOW]),
        "/api/v1/usage": _get(
            "Events and cost per time bucket",
            [_query("bucket", {"enum": ["hour", "day", "month"]}), _GROUP, *_WINDOW],
        ),
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
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
                "responses": {"200": {"description": "ready"}, "503": _ERROR},
            }
        },
    },
}
