"""aicm-manual: schema-validated usage and cost tracking for AI and API services."""

from ._config import UsageConfig
from ._config_sources import DirectoryConfigSource, HttpConfigSource
from ._cost_manager import AsyncCostManager, CostManager
from ._delivery_settings import DeliverySettings, DeliveryType, OnFull
from ._engine import DeliveryEngine
from ._extractor import UniversalExtractor
from ._global import get_global_delivery, get_global_delivery_health, reset_global_delivery
from ._handling import HandlingConfig
from ._llm import LlmUsage, extract_usage
from ._llm_streams import AsyncLlmStream, LlmStream
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
    LlmUsageError,
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
    "AsyncCostManager",
    "AsyncLlmStream",
    "BatchValidationError",
    "ConfigError",
    "ConfigFetchError",
    "ConfigNotFoundError",
    "CostManager",
    "DeliveryEngine",
    "DeliveryError",
    "DeliverySettings",
    "DeliveryType",
    "DirectoryConfigSource",
    "HandlingConfig",
    "HttpConfigSource",
    "InvalidRecordError",
    "LlmStream",
    "LlmUsage",
    "LlmUsageError",
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
    "UniversalExtractor",
    "UsageConfig",
    "UsageRecord",
    "UsageValidationError",
    "__version__",
    "extract_usage",
    "get_global_delivery",
    "get_global_delivery_health",
    "reset_global_delivery",
]
