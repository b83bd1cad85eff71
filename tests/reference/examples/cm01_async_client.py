"""cost-manager.md, AsyncCostManager. Changed: the import; ``AsyncCostManagerClient()``, the
SDK's own API client playing the client being wrapped, -> a local async client (here the
name AsyncCostManagerClient is the wrapper itself); the bare ``async with`` (a REPL form)
runs in asyncio.run."""

import asyncio


class AsyncOpenAI:
    """A local async client: its class name picks the shipped openai config."""

    async def some_call(self) -> str:
        return "done"

    async def __aenter__(self) -> "AsyncOpenAI":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


# --- the example ---
from aicm_manual import AsyncCostManager, AsyncCostManagerClient


async def main() -> None:
    async with AsyncOpenAI() as client:
        async with AsyncCostManager(client) as tracker:
            await tracker.client.some_call()


asyncio.run(main())
assert AsyncCostManagerClient is AsyncCostManager
