"""aicm-manual: schema-validated usage and cost tracking for AI and API services."""

from ._config import UsageConfig
from ._config_sources import DirectoryConfigSource, HttpConfigSource
from ._records import UsageRecord
from ._secret import Secret
from ._tracker import Tracker
from ._validator import TypeValidator
from .errors import (
    AicmError,
    ConfigError,
    ConfigFetchError,
    ConfigNotFoundError,
    InvalidRecordError,
    SchemaError,
    TrackerClosedError,
    TransportError,
    TypeStringError,
    UsageValidationError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AicmError",
    "ConfigError",
    "ConfigFetchError",
    "ConfigNotFoundError",
    "DirectoryConfigSource",
    "HttpConfigSource",
    "InvalidRecordError",
    "SchemaError",
    "Secret",
    "Tracker",
    "TrackerClosedError",
    "TransportError",
    "TypeStringError",
    "TypeValidator",
    "UsageConfig",
    "UsageRecord",
    "UsageValidationError",
    "__version__",
]
