"""manual-usage-tracker.md, Custom Response IDs. Changed: ``tracker`` for the shipped heygen
config; ``remote_response`` (the page's placeholder) -> a local answer."""

from aicm_manual import Tracker

tracker = Tracker("heygen", "heygen::streaming-avatar")
remote_response = {"session_id": "heygen-session-42"}

# --- the example ---
session_id = remote_response["session_id"]
tracker.track({"duration": 12.3}, response_id=session_id)
