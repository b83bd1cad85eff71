"""aicm-manual: schema-validated usage and cost tracking for AI and API services.

The parts, each importing only those above it:

    errors, _secret, _ids, _logging      shared leaves
    _typestring/                         type strings: parse, check, compile (pure)
    _llm/                                token usage of LLM responses and streams (pure)
    _records, _protocol                  a usage record, and the wire contract (pure)
    _http, _settings                     the one HTTP client; settings resolution
    _configs/                            configs, their sources and routing
    _delivery/                           the background engine and its spool
    _record_builder, _tracker, _cost_manager, _call_mapping    what users call
    server/                              the collector (an extra), never imported above
"""

from ._call_mapping import UniversalExtractor
from ._configs.handling import HandlingConfig
from ._configs.model import UsageConfig
from ._configs.sources import DirectoryConfigSource, HttpConfigSource
from ._cost_manager import AsyncCostManager, AsyncCostManagerClient, CostManager
from ._delivery.engine import DeliveryEngine
from ._delivery.process import (
    get_global_delivery,
    get_global_delivery_health,
    reset_global_delivery,
)
from ._delivery.settings import DeliverySettings, DeliveryType, OnFull
from ._llm.streams import AsyncLlmStream, LlmStream
from ._llm.usage import LlmUsage, extract_usage
from ._platform import OpenaiProvider, PlatformProvider, UsageEventBatchQueue
from ._records import UsageRecord
from ._secret import Secret
from ._tracker import Tracker
from ._typestring.validator import TypeValidator
from .errors import (
    AicmError,
    BatchValidationError,
    ConfigError,
    ConfigFetchError,
    ConfigNotFoundError,
    DeliveryError,
    InvalidRecordError,
    LlmUsageError,
    QueueFull,
    QueueFullError,
    SchemaError,
    SpoolError,
    StorageError,
    TrackerClosedError,
    TransportError,
    TypeStringError,
    UsageLimitExceeded,
    UsageValidationError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "AicmError",
    "AsyncCostManager",
    "AsyncCostManagerClient",
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
    "OpenaiProvider",
    "PlatformProvider",
    "QueueFull",
    "QueueFullError",
    "SchemaError",
    "Secret",
    "SpoolError",
    "StorageError",
    "Tracker",
    "TrackerClosedError",
    "TransportError",
    "TypeStringError",
    "TypeValidator",
    "UniversalExtractor",
    "UsageConfig",
    "UsageEventBatchQueue",
    "UsageLimitExceeded",
    "UsageRecord",
    "UsageValidationError",
    "__version__",
    "extract_usage",
    "get_global_delivery",
    "get_global_delivery_health",
    "reset_global_delivery",
]
