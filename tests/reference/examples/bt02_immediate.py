"""batch-tracking.md, Immediate Delivery. Changed: the import; "your-key" -> the collector's
key; ``records`` as the page's first example defines them."""

import os

from _records import records

# --- the example ---
from aicm_manual import Tracker

with Tracker(aicm_api_key=os.environ["AICM_API_KEY"], delivery_type="immediate") as tracker:
    result = tracker.track_batch(records)
    # All records sent atomically in one request
    print(result["results"])  # List of results for each record
