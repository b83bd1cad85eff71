"""batch-tracking.md, After (Batch Call). Changed: the import; ``sessions`` (the page's
placeholder) -> three local sessions."""

from _harness import sessions as make_sessions

from aicm_manual import Tracker

sessions = make_sessions("batch")

# --- the example ---
# Build records list
records = [
    {
        "service_key": "heygen::streaming-avatar",
        "usage": {"duration": session.duration},
        "customer_key": session.customer_id,
        "response_id": session.id,
    }
    for session in sessions
]

# Send as batch
with Tracker() as tracker:
    result = tracker.track_batch(records)
