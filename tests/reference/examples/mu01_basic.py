"""manual-usage-tracker.md, Basic Usage. Changed: the import; "your-config-id" and
"your-service-id" -> the shipped llm config and one of its services."""

# --- the example ---
from aicm_manual import Tracker

tracker = Tracker(
    config_id="llm",
    service_id="openai::gpt-4o-mini",
)

tracker.track({
    "tokens": 256,
    "model": "gpt-4o-mini",
})
