"""aicm-manual: schema-validated usage and cost tracking for AI and API services."""

from ._config import UsageConfig
from ._config_sources import DirectoryConfigSource, HttpConfigSource
from ._delivery_settings import DeliverySettings, DeliveryType, OnFull
from ._engine import DeliveryEngine
from ._global import get_global_delivery, get_global_delivery_health, reset_global_delivery
from ._records import UsageRecord
from ._secret import Secret
from ._tracker import Tracker
from ._validator import TypeValidator
from .errors import (
    AicmError,
    BatchValidationError,
    ConfigError,
    ConfigFetchError,
    ConfigNotFoundError,
    DeliveryError,
    InvalidRecordError,
    QueueFullError,
    SchemaError,
    StorageError,
    TrackerClosedError,
    TransportError,
    TypeStringError,
    UsageValidationError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AicmError",
    "BatchValidationError",
    "ConfigError",
    "ConfigFetchError",
    "ConfigNotFoundError",
    "DeliveryEngine",
    "DeliveryError",
    "DeliverySettings",
    "DeliveryType",
    "DirectoryConfigSource",
    "HttpConfigSource",
    "InvalidRecordError",
    "OnFull",
    "QueueFullError",
    "SchemaError",
    "Secret",
    "StorageError",
    "Tracker",
    "TrackerClosedError",
    "TransportError",
    "TypeStringError",
    "TypeValidator",
    "UsageConfig",
    "UsageRecord",
    "UsageValidationError",
    "__version__",
    "get_global_delivery",
    "get_global_delivery_health",
    "reset_global_delivery",
]
