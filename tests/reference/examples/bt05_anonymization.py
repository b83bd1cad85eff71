"""batch-tracking.md, Anonymization. Changed: the import (the page imports Tracker once)."""

from aicm_manual import Tracker

# --- the example ---
def anonymizer(value):
    if isinstance(value, str) and "@" in value:
        return "user@REDACTED.com"
    return "REDACTED"

records = [
    {
        "service_key": "openai::gpt-4",
        "usage": {"input_tokens": 100, "user_email": "john@acme.com"},
    },
    {
        "service_key": "anthropic::claude-3", 
        "usage": {"input_tokens": 200, "user_id": "user_12345"},
    },
]

with Tracker() as tracker:
    result = tracker.track_batch(
        records,
        anonymize_fields=["user_email", "user_id"],
        anonymizer=anonymizer,
    )
