"""tracker.md, logging options. Changed: the import; "/tmp/aicm.log" -> a file in the
run's own folder (AICM_EXAMPLE_TMP)."""

import os

from aicm_manual import Tracker

# --- the example ---
tracker = Tracker(log_file=os.path.join(os.environ["AICM_EXAMPLE_TMP"], "aicm.log"), log_level="DEBUG", log_bodies=True)
