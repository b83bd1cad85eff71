"""batch-tracking.md, Memory Usage. Changed: the import; ``all_records = [...]`` (the
page's placeholder) -> 120 HeyGen records."""

from aicm_manual import Tracker

# --- the example ---
def chunk_records(records, chunk_size=50):
    for i in range(0, len(records), chunk_size):
        yield records[i:i + chunk_size]

# Process large dataset in chunks
all_records = [  # Your large list of records
    {"service_key": "heygen::streaming-avatar", "usage": {"duration": 60.0}, "response_id": f"chunk-{i}"}
    for i in range(120)
]

with Tracker() as tracker:
    for chunk in chunk_records(all_records, chunk_size=50):
        result = tracker.track_batch(chunk)
        print(f"Processed chunk of {len(chunk)} records")
