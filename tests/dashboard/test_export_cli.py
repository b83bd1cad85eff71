"""``aicm-manual export`` (its parser and runner): the same stream as the dashboard's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from dashboard_support import (
    Running,
    running_fixture,  # noqa: F401  # the `running` fixture
)

from aicm_manual.errors import StorageError
from aicm_manual.server._dashboard.cli import add_export_command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aicm-manual")
    add_export_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["export", *argv])


def test_export_to_a_file_equals_the_download(running: Running, tmp_path: Path) -> None:
    """`export --format jsonl --output FILE` writes what the dashboard's download serves."""
    target = tmp_path / "out.jsonl"
    args = parse(
        "--database", running.database, "--tenant", "tenant-a", "--format", "jsonl",
        "--from", "2026-11-01", "--to", "2026-11-08", "--service-id", "openai::gpt-4o",
        "--output", str(target),
    )  # fmt: skip
    assert args.server_run(args) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines
    assert {e["service_id"] for e in lines} == {"openai::gpt-4o"}
    assert not (tmp_path / "out.jsonl.part").exists()
    api = running.api(
        "/events", service_id="openai::gpt-4o", limit="1000",
        **{"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z"},
    )  # fmt: skip
    assert lines[: len(api["events"])] == api["events"]


def test_export_to_standard_output(
    running: Running, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Without --output the CSV goes to standard output and the count to standard error."""
    args = parse(
        "--database", running.database, "--tenant", "tenant-b",
        "--client-customer-key", "only-in-b",
    )  # fmt: skip
    assert args.server_run(args) == 0
    out, err = capfdbinary.readouterr()
    rows = out.decode().splitlines()
    assert rows[0].startswith("response_id,")
    assert all(",only-in-b," in row for row in rows[1:])
    assert f"exported {len(rows) - 1} event(s)".encode() in err


def test_export_checks_its_arguments_first(tmp_path: Path) -> None:
    """A reversed window or a missing database is an error before anything is written."""
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    reversed_window = parse("--database", missing, "--from", "2026-11-08", "--to", "2026-11-01")
    with pytest.raises(ValueError, match="must be before"):
        reversed_window.server_run(reversed_window)
    no_database = parse("--database", missing, "--output", str(tmp_path / "x.csv"))
    with pytest.raises(StorageError, match="no database"):
        no_database.server_run(no_database)
    assert not (tmp_path / "none.db").exists()
    assert not (tmp_path / "x.csv").exists()
