"""The package's parts import only downward: each folder's rule, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aicm_manual"

# part -> parts of the package it must never import (top-level names under aicm_manual)
FORBIDDEN = {
    "_typestring": {
        "_configs", "_delivery", "_llm", "_protocol", "_records", "_tracker", "server",
        "_http", "_settings", "_cost_manager", "testing", "cli",
    },
    "_llm": {"_configs", "_delivery", "_typestring", "_tracker", "server", "_cost_manager"},
    "_configs": {"_delivery", "_tracker", "_cost_manager", "server", "testing", "cli"},
    "_delivery": {
        "_typestring", "_configs", "_llm", "_tracker", "_cost_manager", "server", "testing",
        "cli",
    },
    "_protocol": {"_configs", "_delivery", "_typestring", "_llm", "_tracker", "server"},
    "_records": {"_configs", "_delivery", "_typestring", "_llm", "_tracker", "server"},
}  # fmt: skip
# QueuedRecord points that may start the collector; every other client module never imports it.
MAY_IMPORT_SERVER = {"cli", "server"}


def _imports(path: Path) -> set[str]:
    """The top-level parts of aicm_manual that ``path`` imports (relative or absolute)."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module if path.name == "__init__.py" else module[:-1]
    package = package[:-1] if path.name == "__init__.py" else package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                if target == ["aicm_manual"]:
                    found.update(alias.name for alias in node.names)
                    continue
            elif node.module and node.module.startswith("aicm_manual"):
                target = node.module.split(".")
            else:
                continue
            if len(target) > 1 and target[0] == "aicm_manual":
                found.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "aicm_manual" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_part_imports_upward(path: Path) -> None:
    """Each module imports only the parts its folder's docstring allows."""
    part = _part(path)
    imported = _imports(path) - {part}
    assert not imported & FORBIDDEN.get(part, set()), sorted(imported & FORBIDDEN[part])
    if part not in MAY_IMPORT_SERVER:
        assert "server" not in imported, f"{path.name} imports the collector"


def test_the_checker_sees_imports() -> None:
    """The import scan itself finds relative and lazy imports (else the test above is empty)."""
    assert "_delivery" in _imports(PACKAGE / "_tracker.py")
    assert "errors" in _imports(PACKAGE / "_typestring" / "parser.py")
    assert "server" in _imports(PACKAGE / "cli.py")


def test_every_folder_says_what_it_may_import() -> None:
    """Each part's ``__init__`` opens with a docstring naming what the part may import."""
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc) > 80, init
