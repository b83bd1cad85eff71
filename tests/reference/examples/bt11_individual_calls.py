"""batch-tracking.md, Before (Individual Calls). Changed: the import; ``sessions`` (the
page's placeholder) -> three local sessions."""

from _harness import sessions as make_sessions

from aicm_manual import Tracker

sessions = make_sessions("single")

# --- the example ---
with Tracker() as tracker:
    for session in sessions:
        tracker.track(
            "heygen::streaming-avatar",
            {"duration": session.duration},
            customer_key=session.customer_id,
            response_id=session.id,
        )
