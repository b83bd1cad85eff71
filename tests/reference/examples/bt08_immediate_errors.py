"""batch-tracking.md, Immediate Delivery Errors. Changed: the import; ``records`` as the
page's first example defines them."""

from _records import records

from aicm_manual import Tracker

# --- the example ---
try:
    with Tracker(delivery_type="immediate") as tracker:
        result = tracker.track_batch(records)
        print("All records processed successfully")
except Exception as e:
    print(f"Batch failed: {e}")
    # Handle the error (retry, log, etc.)
