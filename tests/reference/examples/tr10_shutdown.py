"""tracker.md, Shutting down. Changed: the import."""

from aicm_manual import Tracker

# --- the example ---
with Tracker() as tracker:
    ...

# or manually
tracker = Tracker()
...  # use tracker
tracker.close()
