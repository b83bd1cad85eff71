"""manual-usage-tracker.md, Creating a Tracker. Changed: the import; "cfg"/"svc" -> the
shipped heygen config."""

# --- the example ---
from aicm_manual import Tracker

tracker = Tracker("heygen", "heygen::streaming-avatar")
