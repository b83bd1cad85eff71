"""Operational rough edges of the command line."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from aicm_manual.cli import build_parser
from aicm_manual.server._storage import disk_full_hint

from .live import SCHEMAS, run_cli, serve

COLLECTOR_VERBS = ("serve", "keys", "report", "demo")


def test_serve_on_a_busy_port_fails_without_announcing_that_it_serves(tmp_path: Path) -> None:
    """`serve` on a port another process listens on exits non-zero, says the port is busy,
    and never prints "collector on http://..." (it printed that first, then failed)."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            f"sqlite:///{tmp_path / 'c.db'}",
            "--schemas",
            str(SCHEMAS),
            cwd=tmp_path,
            timeout=60,
        )
    assert result.returncode != 0
    assert str(port) in result.stderr, result.stderr
    assert "collector on http://" not in result.stderr, result.stderr


def test_a_start_with_the_shipped_configs_prints_no_config_warnings(tmp_path: Path) -> None:
    """Starting on the shipped schemas prints no warning about two configs listing the same
    `vendor::*` service (every start printed two: `anthropic` and `llm` both list
    `anthropic::*`, `llm` and `openai` both list `openai::*`)."""
    args = ["--database", f"sqlite:///{tmp_path / 'c.db'}", "--schemas", str(SCHEMAS)]
    with serve(*args, cwd=tmp_path) as served:
        assert served.up
        _, err = served.stop()
    warned = [line for line in err.splitlines() if "both list" in line or "::*'" in line]
    assert warned == []


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing: list[str] = []
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_of_the_collector_verbs_has_help_text() -> None:
    """Every option of serve, keys (each action), report and demo has a help text."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        option
        for verb in COLLECTOR_VERBS
        for option in _options_without_help(commands.choices[verb], f"aicm-manual {verb}")
    ]
    assert missing == [], "options without help:\n" + "\n".join(missing)


def test_a_nearly_full_disk_is_named_as_such() -> None:
    """The hint added to a database error names the disk as full when little room is left,
    and says nothing otherwise (SQLite itself says only "disk I/O error")."""
    path = Path("/var/data/collector.db")
    hint = disk_full_hint(path, free_bytes=lambda folder: 4096)
    assert "is full" in hint
    assert "4096 bytes free" in hint
    assert str(path) in hint
    assert disk_full_hint(path, free_bytes=lambda folder: 10 * 2**30) == ""
