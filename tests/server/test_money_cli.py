"""The money verbs from the command line, on a real database: a price change, the
unpriced report, a re-pricing, budgets with their burn, and webhooks without secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from aicm_manual.server._embedded import embedded_collector

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "aicm_money_cli_key_012345"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aicm_manual", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_price_change_and_a_repricing_from_the_cli(tmp_path: Path) -> None:
    """unpriced shows the service and reason; prices set + reprice price it; again is 0."""
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as c:
        record = {
            "service_id": "contoso::search",
            "response_id": "r1",
            "timestamp": "2026-11-30T10:00:00Z",
            "usage": {"calls": 8},
        }
        r = requests.post(
            f"{c.url}/api/v1/track",
            json={"tracked": [record]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
    db = ["--database", database, "--tenant", "t"]
    report = cli("unpriced", *db)
    assert report.returncode == 0, report.stderr
    assert "contoso::search" in report.stdout
    assert "no config lists the service" in report.stdout
    added = cli(
        "prices", "set", "contoso::search", *db, "--from", "2026-01-01", "--unit", "calls=0.5"
    )
    assert added.returncode == 0, added.stderr
    assert "rule 1" in added.stdout
    listed = cli("prices", "list", *db)
    assert "contoso::search" in listed.stdout
    done = cli("reprice", *db, "--schemas", str(SCHEMAS), "--only-unpriced")
    assert done.returncode == 0, done.stderr
    assert "repriced 1 event(s)" in done.stdout
    assert "after 4.000000000 USD" in done.stdout
    again = cli("reprice", *db, "--schemas", str(SCHEMAS), "--only-unpriced")
    assert "repriced 0 event(s)" in again.stdout
    summary = cli("report", "--database", database, "--tenant", "t", "--group-by", "service_id")
    assert "4.000000000 USD" in summary.stdout


def test_budgets_and_webhooks_from_the_cli(tmp_path: Path) -> None:
    """A budget is listed with its burn; a webhook's generated secret is printed once and
    never listed; a bad budget is refused with the reason."""
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]):
        pass
    db = ["--database", database, "--tenant", "t"]
    made = cli("budgets", "set", "monthly", *db, "--limit", "25", "--action", "block")
    assert made.returncode == 0, made.stderr
    assert "created" in made.stdout
    listed = cli("budgets", "list", *db)
    assert "monthly" in listed.stdout
    assert "0%" in listed.stdout
    bad = cli("budgets", "set", "broken", *db, "--limit", "-5")
    assert bad.returncode != 0
    assert "limit must be a positive amount" in bad.stderr
    hook = cli("webhooks", "set", "ops", *db, "--url", "http://127.0.0.1:9/hook")
    assert hook.returncode == 0, hook.stderr
    secret = hook.stdout.split("shown once; verify webhook-signature with it): ")[1].split()[0]
    assert secret.startswith("whsec_")
    hooks = cli("webhooks", "list", *db)
    assert "http://127.0.0.1:9/hook" in hooks.stdout
    assert secret not in hooks.stdout
    assert cli("budgets", "delete", "monthly", *db).returncode == 0


def test_a_repricing_past_64_bits_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """The CLI says which day would overflow, exits 1 and leaves the events unpriced."""
    database = f"sqlite:///{tmp_path / 'overflow.db'}"
    with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as c:
        records = [
            {
                "service_id": "contoso::search",
                "response_id": f"o{n}",
                "timestamp": "2026-11-30T10:00:00Z",
                "usage": {"calls": 1},
            }
            for n in range(2)
        ]
        r = requests.post(
            f"{c.url}/api/v1/track",
            json={"tracked": records},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
    db = ["--database", database, "--tenant", "t"]
    price = ("--from", "2026-01-01", "--unit", "calls=5000000000")
    assert cli("prices", "set", "contoso::search", *db, *price).returncode == 0
    done = cli("reprice", *db, "--schemas", str(SCHEMAS), "--only-unpriced")
    assert done.returncode == 1
    assert "2026-11-30" in done.stderr
    assert "64-bit" in done.stderr
    assert "Traceback" not in done.stderr
    assert "contoso::search" in cli("unpriced", *db).stdout
