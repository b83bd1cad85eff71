"""docs/llm.md and docs/cost-manager.md run: every python block except those that call a
vendor over the network, in order, in one namespace, against the real collector on
loopback, in immediate mode (so a record the collector refuses, e.g. a conflict, fails the
run instead of a log line).

Until the Tracker has the LLM methods and aicm_manual exports the new names, the run adds
them as the pages describe, so the pages are checked from the start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicm_manual.server._embedded import EmbeddedCollector, embedded_collector

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "llm.md"
KEY = "aicm_llm_docs_key"
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)

RUNNER = """
import ast, asyncio, inspect, json, sys
import aicm_manual
from aicm_manual import Tracker
from aicm_manual import _cost_manager, _extractor, _handling, _llm, errors
from aicm_manual import _llm_track as llm

for module, name in [(_cost_manager, "CostManager"), (_cost_manager, "AsyncCostManager"),
                     (_handling, "HandlingConfig"), (_extractor, "UniversalExtractor"),
                     (_llm, "extract_usage"), (_llm, "LlmUsage"), (errors, "LlmUsageError")]:
    if not hasattr(aicm_manual, name):
        setattr(aicm_manual, name, getattr(module, name))

if not hasattr(Tracker, "track_llm_usage"):
    def _config(self):
        return self.config_id if self.config_id is not None else "llm"

    def track_llm_usage(self, api_id, response, **kw):
        return llm.track_llm_usage(self.track, api_id, response, config_id=_config(self), **kw)

    def track_llm_stream_usage(self, api_id, stream, **kw):
        return llm.track_llm_stream_usage(
            self.track, api_id, stream, config_id=_config(self), **kw)

    async def track_llm_usage_async(self, api_id, response, **kw):
        return await llm.track_llm_usage_async(
            self.track_async, api_id, response, config_id=_config(self), **kw)

    def track_llm_stream_usage_async(self, api_id, stream, **kw):
        return llm.track_llm_stream_usage_async(
            self.track_async, api_id, stream, config_id=_config(self), **kw)

    for f in (track_llm_usage, track_llm_stream_usage, track_llm_usage_async,
              track_llm_stream_usage_async):
        setattr(Tracker, f.__name__, f)

path = sys.argv[1]
namespace = {"__name__": "__docs__"}
for line, source in json.loads(sys.argv[2]):
    code = compile("\\n" * (line - 1) + source, path, "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if inspect.CO_COROUTINE & code.co_flags:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
"""


def blocks(path: Path) -> list[tuple[int, str]]:
    """(first line, source) of each block not marked as needing a vendor's network."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if "no-run:" in before and "network" in before:
            continue
        found.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return found


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[EmbeddedCollector]:
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", ROOT / "schemas", [f"t:{KEY}"]) as c:
        yield c


def run_page(page: Path, collector: EmbeddedCollector, tmp_path: Path) -> str:
    import json

    found = blocks(page)
    assert len(found) >= 2
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AICM_")},
        "AICM_API_BASE": collector.url,
        "AICM_API_KEY": KEY,
        "AICM_INI_PATH": str(tmp_path / "AICM.INI"),
        "AICM_DELIVERY_TYPE": "immediate",
    }
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(page), json.dumps(found)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_llm_page_runs(collector: EmbeddedCollector, tmp_path: Path) -> None:
    import requests

    assert len(blocks(PAGE)) >= 5
    assert "Snow falls" in run_page(PAGE, collector, tmp_path)
    summary = requests.get(
        f"{collector.url}/api/v1/costs/summary",
        params={"group_by": "service_id"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ).json()
    rows = {row["service_id"]: row for row in summary["rows"]}
    # One message tracked twice (stored once) and three streams; all priced.
    assert rows["anthropic::claude-sonnet-4-5-20250929"]["events"] == 4
    assert rows["google::gemini-2.5-flash"]["events"] == 1
    assert rows["openai::gpt-4o-mini-2024-07-18"]["events"] == 1
    assert all(row["unpriced"] == 0 for row in rows.values())


def test_cost_manager_page_runs(collector: EmbeddedCollector, tmp_path: Path) -> None:
    page = ROOT / "docs" / "cost-manager.md"
    assert len(blocks(page)) == 2  # the others call a vendor
    run_page(page, collector, tmp_path)
