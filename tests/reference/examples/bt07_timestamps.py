"""batch-tracking.md, Timestamp Handling. Unchanged; the page builds these records for
track_batch(), which the lines after the example do."""

from datetime import datetime, timezone

records = [
    {
        "service_key": "openai::gpt-4",
        "usage": {"tokens": 100},
        "timestamp": "2024-01-15T10:30:00Z",  # ISO string
    },
    {
        "service_key": "anthropic::claude-3",
        "usage": {"tokens": 200}, 
        "timestamp": datetime.now(timezone.utc),  # datetime object
    },
    {
        "service_key": "heygen::streaming-avatar",
        "usage": {"duration": 60},
        # No timestamp - uses current time
    },
]

# --- sending them, as the page's other examples do ---
from aicm_manual import Tracker

with Tracker() as tracker:
    tracker.track_batch(records)
