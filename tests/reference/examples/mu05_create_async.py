"""manual-usage-tracker.md, Async Initialization. Changed: the import; "cfg"/"svc" -> the
shipped heygen config; the bare ``await`` (a REPL form) runs in asyncio.run."""

import asyncio

# --- the example ---
from aicm_manual import Tracker


async def main() -> None:
    tracker = await Tracker.create_async("heygen", "heygen::streaming-avatar")
    # ... use tracker.track(...)
    tracker.close()  # during shutdown


asyncio.run(main())
