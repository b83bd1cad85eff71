"""batch-tracking.md, Persistent Queue Errors. Changed: the import; ``records`` as the
page's first example defines them."""

from _records import records

from aicm_manual import Tracker

# --- the example ---
with Tracker(delivery_type="persistent_queue") as tracker:
    result = tracker.track_batch(records)
    print(f"Queued {len(result['response_ids'])} records")
    
    # Check queue status later
    stats = tracker.delivery.stats()
    if stats.get("total_failed", 0) > 0:
        print(f"Some records failed: {stats}")
