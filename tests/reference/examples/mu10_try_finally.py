"""manual-usage-tracker.md, Stopping the delivery worker. Changed: the import; "cfg"/"svc"
-> the shipped llm config."""

from aicm_manual import Tracker

# --- the example ---
tracker = Tracker("llm", "openai::gpt-4o-mini")
try:
    tracker.track({"tokens": 5})
finally:
    tracker.close()
