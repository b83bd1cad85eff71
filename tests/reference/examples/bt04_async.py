"""batch-tracking.md, Async Usage. Changed: the import; "your-key" -> the collector's key."""

import os

# --- the example ---
import asyncio
from aicm_manual import Tracker

async def track_multiple_events():
    records = [
        {
            "service_key": "openai::gpt-4",
            "usage": {"input_tokens": 100},
        },
        {
            "service_key": "anthropic::claude-3",
            "usage": {"input_tokens": 200},
        },
    ]
    
    with Tracker(aicm_api_key=os.environ["AICM_API_KEY"]) as tracker:
        result = await tracker.track_batch_async(records)
        return result

# Run the async function
result = asyncio.run(track_multiple_events())
