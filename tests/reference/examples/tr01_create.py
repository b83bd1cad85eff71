"""tracker.md, Creating a tracker. Changed: the import (the page's examples assume it)."""

from aicm_manual import Tracker

# --- the example ---
# Uses API key from environment by default and ensures the
# delivery queue is flushed on exit
with Tracker() as tracker:
    ...  # call track() as needed
