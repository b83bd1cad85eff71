"""aicm-manual: schema-validated usage and cost tracking for AI and API services."""

from __future__ import annotations

from ._validator import TypeValidator
from .errors import (
    AicmError,
    ConfigError,
    ConfigFetchError,
    ConfigNotFoundError,
    SchemaError,
    TrackerClosedError,
    TypeStringError,
    UsageValidationError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AicmError",
    "ConfigError",
    "ConfigFetchError",
    "ConfigNotFoundError",
    "SchemaError",
    "TrackerClosedError",
    "TypeStringError",
    "TypeValidator",
    "UsageValidationError",
    "__version__",
]
