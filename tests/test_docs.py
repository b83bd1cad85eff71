"""The README example runs as written, doc examples hold, and public names are documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import aicm_manual
import aicm_manual.testing
from aicm_manual import TypeValidator, UsageValidationError

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_readme_example_runs_as_written() -> None:
    [example] = python_blocks(ROOT / "README.md")
    out = subprocess.run(
        [sys.executable, "-c", example],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "input_tokens: expected int, got bool True" in out.stdout
    assert "did you mean 'output_tokens'?" in out.stdout
    assert "'client_customer_key': 'acme'" in out.stdout


def test_type_strings_doc_example_holds() -> None:
    v = TypeValidator(
        {"tokens": "int", "breakdown": "Dict[str, List[int]]", "latency": "Optional[float]"}
    )
    assert v.is_valid({"tokens": 3, "breakdown": {"a": [1, 2]}})
    assert not v.is_valid({"tokens": True, "breakdown": {}})
    with pytest.raises(UsageValidationError) as info:
        v.validate({"tokens": "3", "breakdown": {"a": [1, "x"]}, "latnecy": 0.2})
    assert info.value.errors == {
        "tokens": ["tokens: expected int, got str '3'"],
        "breakdown": ["breakdown[\"a\"][1]: expected int, got str 'x'"],
        "latnecy": ["latnecy: unexpected field (did you mean 'latency'?)"],
    }
    assert info.value.extra_fields == ["latnecy"]
    assert info.value.missing_fields == []


def test_every_public_name_is_documented() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    names = [n for n in aicm_manual.__all__ if n != "__version__"]
    names += aicm_manual.testing.__all__
    missing = [n for n in names if f"`{n}" not in api]
    assert missing == []


def test_docs_link_to_existing_pages() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
