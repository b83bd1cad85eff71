"""manual-usage-tracker.md, Validation and Errors. Changed: the import; ``tracker`` for the
shipped heygen config (its schema declares a required float ``duration``)."""

from aicm_manual import Tracker

tracker = Tracker("heygen", "heygen::streaming-avatar")

# --- the example ---
from aicm_manual import Tracker, UsageValidationError

try:
    tracker.track({"tokens": "oops"})
except UsageValidationError as exc:
    print(exc.errors, exc.missing_fields, exc.extra_fields)
