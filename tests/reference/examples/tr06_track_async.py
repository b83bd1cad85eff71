"""tracker.md, Asynchronous usage. Changed: the import; ``tracker`` and ``usage`` as the
page's earlier examples make them; the bare ``await`` (a REPL form) runs in asyncio.run."""

import asyncio

from aicm_manual import Tracker

tracker = Tracker()
usage = {"input_tokens": 10, "output_tokens": 20}


async def main() -> None:
    # --- the example ---
    await tracker.track_async("openai", "gpt-5-mini", usage)


asyncio.run(main())
