"""The example scripts keep the SDK pages' code: every line of every example is in its
script, apart from the import line and the placeholders each script's docstring names.

The pages live outside this repository (the team's copy of the SDK documentation); where
they are not present this check is skipped, and the scripts stand as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "examples"
# The team keeps them beside the checkout, in shared/reference/.
PAGES = Path(__file__).resolve().parents[3] / "shared" / "reference"

# page -> the script holding each ```python block, in page order.
SCRIPTS = {
    "batch-tracking.md": [
        "bt01_basic_usage",
        "bt02_immediate",
        "bt03_persistent",
        "bt04_async",
        "bt05_anonymization",
        "bt06_defaults",
        "bt07_timestamps",
        "bt08_immediate_errors",
        "bt09_persistent_errors",
        "bt10_chunks",
        "bt11_individual_calls",
        "bt12_batch_call",
        "bt13_real_world",
    ],
    "tracker.md": [
        "tr01_create",
        "tr02_delivery_type",
        "tr03_logging",
        "tr04_background",
        "tr05_optional_fields",
        "tr06_track_async",
        "tr07_fastapi",
        "tr08_llm_usage",
        "tr09_llm_stream",
        "tr10_shutdown",
    ],
    "manual-usage-tracker.md": [
        "mu01_basic",
        "mu02_validation",
        "mu03_context",
        "mu04_response_id",
        "mu05_create_async",
        "mu06_fastapi",
        "mu07_health",
        "mu08_create",
        "mu05_create_async",
        "mu09_recording",
        "mu10_try_finally",
        "mu06_fastapi",
    ],
    "cost-manager.md": ["cm01_async_client"],
    "usage-event-batching.md": ["ae_platform_provider"] * 11,
}
# Lines that name the SDK's modules or placeholders; each script's docstring says how it
# replaced them.
IMPORTS = re.compile(r"^from (aicostmanager|any_llm\.providers\.\w+|openai) import ")
PLACEHOLDERS = (
    '"your-key"',
    '"your-api-key"',
    '"your-any-llm-platform-key"',
    '"cfg"',
    '"svc"',
    '"your-config-id"',
    '"your-service-id"',
    '"/tmp/aicm.log"',
    "AsyncCostManagerClient()",
    "all_records = [...]",
)


def _blocks(page: str) -> list[str]:
    text = (PAGES / page).read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


@pytest.mark.skipif(not PAGES.is_dir(), reason="the SDK pages are not on this machine")
@pytest.mark.parametrize("page", sorted(SCRIPTS))
def test_every_example_line_is_in_its_script(page: str) -> None:
    """Apart from imports and placeholders, each example line appears in its script."""
    blocks = _blocks(page)
    assert len(blocks) == len(SCRIPTS[page])
    for block, script in zip(blocks, SCRIPTS[page], strict=True):
        lines = {line.strip() for line in (EXAMPLES / f"{script}.py").read_text().splitlines()}
        for line in block.splitlines():
            kept = line.strip()
            if not kept or IMPORTS.match(kept) or any(p in kept for p in PLACEHOLDERS):
                continue
            assert kept in lines, f"{page} -> {script}.py lacks {kept!r}"
