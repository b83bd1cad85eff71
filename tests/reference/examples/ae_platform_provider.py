"""usage-event-batching.md (any-llm's PlatformProvider), every example in page order.
Changed: the imports ``any_llm.providers.platform`` / ``any_llm.providers.openai`` ->
aicm_manual; "your-key" / "your-any-llm-platform-key" -> the collector's key (KEY). Each
``async def example()`` is run right after it is defined. ``OpenaiProvider`` reads the OpenAI
SDK's own ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, which the test points at a loopback
OpenAI-compatible endpoint (no change to the code)."""

import asyncio
import os

KEY = os.environ["AICM_API_KEY"]

# --- example 1 ---
from aicm_manual import PlatformProvider
from aicm_manual import OpenaiProvider

async def example():
    async with PlatformProvider(api_key=KEY) as provider:
        provider.provider = OpenaiProvider
        # Use provider for completions
        # Events are automatically flushed when exiting the context

asyncio.run(example())

# --- example 2 ---
async def example():
    provider = PlatformProvider(api_key=KEY)
    # ... use provider ...

    # Flush pending events without shutting down
    await provider.flush_usage_events()

    # Or shutdown completely (flushes and stops background tasks)
    await provider.shutdown()

asyncio.run(example())

# --- example 3 ---
from aicm_manual import PlatformProvider
from aicm_manual import OpenaiProvider

async def example():
    # Events are automatically batched with default settings:
    # - batch_size: 50 events
    # - flush_interval: 5.0 seconds
    provider = PlatformProvider(api_key=KEY)
    provider.provider = OpenaiProvider

    # Use the provider normally
    response = await provider.acompletion(
        model="gpt-4",
        messages=[{"role": "user", "content": "Hello!"}]
    )

asyncio.run(example())

# --- example 4 ---
from aicm_manual import PlatformProvider

# Smaller batches, more frequent flushes
provider = PlatformProvider(
    api_key=KEY,
    batch_size=25,         # Flush every 25 events (instead of 50)
    flush_interval=2.0,    # Flush every 2 seconds (instead of 5)
)

# --- example 5 ---
from aicm_manual import PlatformProvider

async def example():
    provider = PlatformProvider(api_key=KEY)
    # ... use provider ...

    # Flush all pending events immediately
    await provider.flush_usage_events()

asyncio.run(example())

# --- example 6 ---
async def example():
    provider = PlatformProvider(api_key=KEY)
    try:
        # ... use provider ...
        pass
    finally:
        # Flush remaining events and stop background tasks
        await provider.shutdown()

asyncio.run(example())

# --- example 7 ---
from aicm_manual import PlatformProvider

# Configuration for high throughput
provider = PlatformProvider(
    api_key=KEY,
    batch_size=100,        # Larger batches
    flush_interval=10.0,   # Longer wait time
)

# --- example 8 ---
from aicm_manual import PlatformProvider

# Configuration for real-time applications
provider = PlatformProvider(
    api_key=KEY,
    batch_size=10,         # Smaller batches
    flush_interval=1.0,    # More frequent flushes
)

# --- example 9 ---
from aicm_manual import PlatformProvider
from aicm_manual import OpenaiProvider

async def example():
    # Option 1: Context manager (recommended)
    async with PlatformProvider(api_key=KEY) as provider:
        provider.provider = OpenaiProvider
        # ... use provider ...
        # Automatically flushes on exit

    # Option 2: Manual shutdown
    provider = PlatformProvider(api_key=KEY)
    try:
        provider.provider = OpenaiProvider
        # ... use provider ...
    finally:
        await provider.shutdown()

asyncio.run(example())

# --- example 10 ---
provider = PlatformProvider(api_key=KEY)
# Check queue size
queue_size = len(provider.batch_queue._queue)

# --- example 11 ---
from aicm_manual import PlatformProvider

# The provider creates and manages its own queue
provider = PlatformProvider(api_key=KEY)
# Access the queue directly if needed
batch_queue = provider.batch_queue
