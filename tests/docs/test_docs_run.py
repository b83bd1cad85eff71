"""Every ```python block in docs/ runs, page by page, against a loopback collector.

A block that cannot run here (it needs a vendor's network, say) is preceded by the line
``<!-- no-run: why -->``; the reason is required, so skipping is a visible choice.
The page's blocks share one namespace and run in a fresh interpreter whose environment
points the client at an embedded collector (AICM_API_BASE, AICM_API_KEY) serving schemas/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_NO_RUN = re.compile(r"<!-- no-run: \S.*-->\s*$")


def runnable_blocks(path: str | Path) -> list[tuple[int, str]]:
    """(first line number, source) of each block that is not marked no-run."""
    text = Path(path).read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if _NO_RUN.search(before):
            continue
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from aicm_manual.server._embedded import embedded_collector

    data = tmp_path_factory.mktemp("docs-collector")
    with embedded_collector(
        f"sqlite:///{data}/events.db", ROOT / "schemas", ["docs-tenant:aicm_docs_key"]
    ) as running:
        yield running.url


def test_no_run_markers_give_a_reason() -> None:
    for page in DOCS:
        for line in page.read_text().splitlines():
            if "no-run" in line:
                assert _NO_RUN.search(line), f"{page.name}: {line!r} needs '<!-- no-run: why -->'"


@pytest.mark.parametrize("page", [p for p in DOCS if runnable_blocks(p)], ids=lambda p: p.name)
def test_page_code_runs(page: Path, collector: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AICM_")},
        "AICM_API_BASE": collector,
        "AICM_API_KEY": "aicm_docs_key",
        "AICM_INI_PATH": str(tmp_path / "AICM.INI"),
        "AICM_DB_PATH": str(tmp_path / "spool.db"),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "run_blocks.py"), str(page)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"{page.name}:\n{out.stdout}\n{out.stderr}"


def test_blocks_marked_no_run_are_skipped_and_failures_surface(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n<!-- no-run: needs a vendor key -->\n"
        "```python\nimport nonexistent_vendor_sdk\n```\n```python\nassert x == 2, 'x'\n```\n"
    )
    assert [line for line, _ in runnable_blocks(page)] == [3, 10]
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "run_blocks.py"), str(page)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert f'File "{page}", line 10' in out.stderr
    assert "AssertionError: x" in out.stderr


def test_a_page_whose_records_are_refused_fails(collector: str, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nfrom aicm_manual import Tracker\n"
        "t = Tracker('heygen', 'heygen::streaming-avatar')\n"
        "t.track({'duration': 1.0}, response_id='same')\n"
        "t.flush(10)\n"
        "t.track({'duration': 2.0}, response_id='same')  # a conflict\n```\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AICM_")},
        "AICM_API_BASE": collector,
        "AICM_API_KEY": "aicm_docs_key",
        "AICM_INI_PATH": str(tmp_path / "AICM.INI"),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "run_blocks.py"), str(page)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "left records undelivered: {'total_rejected': 1}" in out.stderr
