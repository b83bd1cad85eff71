"""batch-tracking.md, Persistent Queue Delivery. Changed: the import; "your-key" -> the
collector's key; ``records`` as the page's first example defines them."""

import os

from _records import records

# --- the example ---
from aicm_manual import Tracker

with Tracker(aicm_api_key=os.environ["AICM_API_KEY"], delivery_type="persistent_queue") as tracker:
    result = tracker.track_batch(records)
    # Records queued individually, processed in background
    print(f"Queued {result['queued']} items")
    print(f"Response IDs: {result['response_ids']}")
