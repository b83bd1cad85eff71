"""The collector's verbs (``keys create``, ``report``, ``serve``, ``demo``) through
``aicm_manual.cli.main`` and as ``python -m aicm_manual`` subprocesses, on real SQLite files
and real loopback sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aicm_manual.cli import main
from aicm_manual.server import hash_key
from aicm_manual.server._embedded import embedded_collector

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY_ACME = "aicm_cli_key_acme_123456"
KEY_OTHER = "aicm_cli_key_other_123456"
CHAT = {"model": "gpt-4o-mini", "input_tokens": 1_000_000, "output_tokens": 2_000_000}


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich sizes tables to COLUMNS; wide enough that no cell wraps."""
    monkeypatch.setenv("COLUMNS", "200")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_process(cwd: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aicm_manual", *argv],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICM_")}
    env["COLUMNS"] = "200"
    return env


def table_row(output: str, label: str) -> list[str]:
    """The cells of the table line whose first cell is ``label``."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{output}")


def db_bytes(path: Path) -> bytes:
    """The database file and its WAL/shared-memory files, whatever is on disk."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def track(url: str, key: str, records: list[dict[str, Any]]) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/track",
        json={"tracked": records},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def rec(rid: str, config_id: str, service_id: str, usage: dict[str, Any], **more: Any) -> dict:
    return {
        "config_id": config_id,
        "service_id": service_id,
        "response_id": rid,
        "timestamp": "2026-11-24T10:00:00Z",
        "usage": usage,
        **more,
    }


# -- keys create --------------------------------------------------------------------------


def test_keys_create_prints_one_key_that_authenticates_and_only_its_hash_is_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "keys.db"
    code, out, err = run(
        capsys,
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "ingest,read",
        "--database",
        f"sqlite:///{db}",
        "--create",
    )
    assert code == 0, err
    [key] = out.split()  # stdout is the key and nothing else, so scripts can capture it
    assert key.startswith("aicm_")
    assert "tenant 'acme'" in err
    assert "ingest, read" in err
    stored = db_bytes(db)
    assert key.encode() not in stored
    assert hash_key(key).encode() in stored  # proves the bytes searched are the key table's
    with embedded_collector(f"sqlite:///{db}", SCHEMAS, []) as c:
        auth = {"Authorization": f"Bearer {key}"}
        assert requests.get(f"{c.url}/api/v1/configs", headers=auth, timeout=10).ok
        sent = track(c.url, key, [rec("r1", "openai-chat", "openai::gpt-4o-mini", CHAT)])
        assert sent.status_code == 200, sent.text
        # the record landed in the key's tenant
        assert c.storage.get_events("acme", "r1")
        assert not c.storage.get_events("default", "r1")
        bogus = {"Authorization": "Bearer aicm_not_a_key_at_all"}
        assert requests.get(f"{c.url}/api/v1/configs", headers=bogus, timeout=10).status_code == 401


def test_keys_create_read_scope_only_cannot_ingest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    code, out, _ = run(
        capsys,
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "read",
        "--database",
        db,
        "--create",
    )
    assert code == 0
    key = out.strip()
    with embedded_collector(db, SCHEMAS, []) as c:
        auth = {"Authorization": f"Bearer {key}"}
        assert requests.get(f"{c.url}/api/v1/configs", headers=auth, timeout=10).ok
        refused = track(c.url, key, [rec("r1", "openai-chat", "openai::gpt-4o-mini", CHAT)])
        assert refused.status_code == 403
        assert "ingest" in refused.json()["detail"]


def test_keys_create_in_a_subprocess_makes_distinct_keys(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    keys = []
    for _ in range(2):
        done = run_process(
            tmp_path, "keys", "create", "--tenant", "acme", "--database", db, "--create"
        )
        assert done.returncode == 0, done.stderr
        keys.append(done.stdout.strip())
    assert len(set(keys)) == 2
    assert all(k.startswith("aicm_") and "\n" not in k for k in keys)
    with embedded_collector(db, SCHEMAS, []) as c:
        for key in keys:  # default scopes are ingest and read
            ok = track(c.url, key, [rec(key[-8:], "openai-chat", "openai::gpt-4o-mini", CHAT)])
            assert ok.status_code == 200, ok.text


# -- report -------------------------------------------------------------------------------


@pytest.fixture
def filled_db(tmp_path: Path) -> str:
    """Tenant acme: 2 gpt-4o-mini calls (1.35 USD each), 10 avatar minutes (1 USD), an
    unpriced internal::search call and 1000 geocoder calls (2 EUR, a day later). Tenant
    other: one more gpt-4o-mini call that acme's report must not count."""
    url = f"sqlite:///{tmp_path / 'report.db'}"
    with embedded_collector(url, SCHEMAS, [f"acme:{KEY_ACME}", f"other:{KEY_OTHER}"]) as c:
        internal = {"endpoint": "/v1/x", "status_codes": {"200": 1}}
        answer = track(
            c.url,
            KEY_ACME,
            [
                rec("a1", "openai-chat", "openai::gpt-4o-mini", CHAT, client_customer_key="c1"),
                rec("a2", "openai-chat", "openai::gpt-4o-mini", CHAT, client_customer_key="c2"),
                rec("a3", "heygen", "heygen::streaming-avatar", {"duration": 600.0}),
                rec("a4", "internal-api", "internal::search", {"calls": 5, **internal}),
                rec(
                    "a5",
                    "internal-api",
                    "internal::geocoder",
                    {"calls": 1000, **internal},
                    timestamp="2026-11-25T10:00:00Z",
                ),
            ],
        )
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}
        other = track(c.url, KEY_OTHER, [rec("o1", "openai-chat", "openai::gpt-4o-mini", CHAT)])
        assert other.status_code == 200, other.text
    return url


def test_report_by_service_prints_each_service_and_the_totals_per_currency(
    capsys: pytest.CaptureFixture[str], filled_db: str
) -> None:
    code, out, err = run(
        capsys, "report", "--database", filled_db, "--tenant", "acme", "--group-by", "service_id"
    )
    assert code == 0, err
    assert "Cost by service_id" in out
    assert table_row(out, "openai::gpt-4o-mini") == [
        "openai::gpt-4o-mini",
        "2",
        "0",
        "2.700000000 USD",
    ]
    assert table_row(out, "heygen::streaming-avatar")[1:] == ["1", "0", "1.000000000 USD"]
    assert table_row(out, "internal::geocoder")[1:] == ["1", "0", "2.000000000 EUR"]
    assert table_row(out, "internal::search")[1:] == ["1", "1", "-"]
    assert table_row(out, "total")[1:] == ["5", "1", "2.000000000 EUR + 3.700000000 USD"]


def test_report_by_customer_and_window_in_a_subprocess(filled_db: str, tmp_path: Path) -> None:
    done = run_process(tmp_path, "report", "--database", filled_db, "--tenant", "acme")
    assert done.returncode == 0, done.stderr
    assert table_row(done.stdout, "c1")[1:] == ["1", "0", "1.350000000 USD"]
    assert table_row(done.stdout, "c2")[1:] == ["1", "0", "1.350000000 USD"]
    assert table_row(done.stdout, "(none)")[1:] == ["3", "1", "2.000000000 EUR + 1.000000000 USD"]
    windowed = run_process(
        tmp_path,
        "report",
        "--database",
        filled_db,
        "--tenant",
        "acme",
        "--group-by",
        "service_id",
        "--from",
        "2026-11-25T00:00:00Z",
        "--to",
        "2026-11-26T00:00:00Z",
    )
    assert windowed.returncode == 0, windowed.stderr
    assert table_row(windowed.stdout, "total")[1:] == ["1", "0", "2.000000000 EUR"]
    assert "openai::gpt-4o-mini" not in windowed.stdout


def test_report_counts_only_the_named_tenant(
    capsys: pytest.CaptureFixture[str], filled_db: str
) -> None:
    code, out, _ = run(
        capsys, "report", "--database", filled_db, "--tenant", "other", "--group-by", "service_id"
    )
    assert code == 0
    assert table_row(out, "total")[1:] == ["1", "0", "1.350000000 USD"]
    code, out, _ = run(capsys, "report", "--database", filled_db, "--tenant", "nobody")
    assert code == 0
    assert table_row(out, "total")[1:] == ["0", "0", "-"]


# -- serve --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``aicm-manual serve`` in a subprocess on a free loopback port, once /healthz answers;
    killed by its pid afterwards if the test left it running."""
    db = tmp_path / "served.db"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aicm_manual",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            f"sqlite:///{db}",
            "--schemas",
            str(SCHEMAS),
            "--api-key",
            f"acme:{KEY_ACME}",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"serve exited with {proc.returncode} before answering: {err}")
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("serve did not answer /healthz within 30 s")
            time.sleep(0.05)  # polling a port that is not open yet; the deadline bounds it
        yield proc, url, db
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_serve_answers_healthz_and_keyed_routes_then_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, _ = served
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
    auth = {"Authorization": f"Bearer {KEY_ACME}"}
    assert requests.get(f"{url}/api/v1/configs", headers=auth, timeout=5).status_code == 200
    sent = track(url, KEY_ACME, [rec("s1", "openai-chat", "openai::gpt-4o-mini", CHAT)])
    assert sent.status_code == 200, sent.text
    assert requests.get(f"{url}/api/v1/configs", timeout=5).status_code == 401
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert f"aicm-manual collector on {url} (sqlite, 1 key(s) registered, at most" in err


def test_serve_closes_its_storage_and_exits_0_on_sigterm(
    served: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """SIGTERM (what systemd, Docker and Kubernetes send) is a clean stop, like Ctrl-C:
    exit status 0 and the storage closed, so SQLite has folded its WAL back in."""
    proc, url, db = served
    sent = track(url, KEY_ACME, [rec("s1", "openai-chat", "openai::gpt-4o-mini", CHAT)])
    assert sent.status_code == 200, sent.text
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert not Path(f"{db}-wal").exists()


# -- demo ---------------------------------------------------------------------------------


def test_demo_tracks_records_prints_both_cost_tables_and_flushes_everything(
    tmp_path: Path,
) -> None:
    data = tmp_path / "demo"
    argv = ("demo", "--data-dir", str(data), "--records", "200", "--schemas", str(SCHEMAS))
    for _ in range(2):  # a second run starts from an empty database again
        done = run_process(tmp_path, *argv, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "flushed: 0" in done.stdout
        assert "Cost by client_customer_key" in done.stdout
        assert "Cost by service_id" in done.stdout
        by_customer, by_service = done.stdout.split("Cost by service_id")
        # 200 tracked, 20 sent twice and stored once, 1 of a client's unvalidated batch.
        assert table_row(by_customer, "total")[1] == "221"
        assert table_row(by_service, "total")[1] == "221"
        assert table_row(by_service, "total")[3].endswith(" USD")
        search = table_row(by_service, "internal::search")  # no config prices it
        assert search[1] == search[2] != "0"
        assert table_row(by_service, "total")[2] == search[2]
        assert "usage payload is invalid" in done.stdout
        assert "demo-unvalidated-1: rejected (input_tokens" in done.stdout
        assert "internal::search: " in done.stdout.split("Not priced")[1]
        assert re.search(r"heygen-daily: [\d.]+ of 5\.000000000 USD this day", done.stdout)
    assert (data / "collector.db").exists()


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "create", "--scopes", "ingest,launch"], "scopes must be among"),
        (["keys", "create", "--scopes", " , "], "scopes must be among"),
        (["keys", "create", "--database", "mysql://db/x"], "must start with sqlite:///"),
        (["report", "--database", "mysql://db/x"], "must start with sqlite:///"),
        (["serve", "--database", "redis://x"], "must start with sqlite:///"),
        (["serve", "--api-key", "bad tenant:aicm_key_123456"], "tenant 'bad tenant'"),
        (["serve", "--api-key", "acme:short"], "at least 8 characters"),
        (["report", "--from", "yesterday"], "'yesterday'"),
    ],
)
def test_bad_input_exits_1_with_a_one_line_message(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # defaults such as aicm-data/collector.db land here
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith(f"aicm-manual {argv[0]}: error: ")
    assert message in err
    assert "Traceback" not in err


def test_bad_input_in_a_subprocess_exits_1_without_a_traceback(tmp_path: Path) -> None:
    done = run_process(tmp_path, "keys", "create", "--scopes", "superuser")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "aicm-manual keys: error: scopes must be among" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "report", "--group-by", "model")[0] == 2
    assert run(capsys, "keys")[0] == 2
    assert run(capsys, "serve", "--port", "eighty")[0] == 2


def test_keys_create_refuses_a_tenant_serve_would_refuse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``serve --api-key`` accepts only 1-64 letters, digits or ._- as a tenant; a key made
    for any other tenant name could never be registered the documented way."""
    db = tmp_path / "keys.db"
    code, out, err = run(
        capsys, "keys", "create", "--tenant", "bad tenant!", "--database", f"sqlite:///{db}"
    )
    assert code == 1, out
    assert out == ""
    assert "tenant 'bad tenant!'" in err


@pytest.mark.parametrize(
    "database",
    [
        "postgresql://nobody@127.0.0.1:1/none",  # nothing listens on port 1
        "sqlite:////proc/no-such-dir/c.db",  # a directory that cannot be created
    ],
)
def test_an_unusable_database_is_a_readable_error_not_a_traceback(
    tmp_path: Path, database: str
) -> None:
    done = run_process(tmp_path, "report", "--database", database)
    assert done.returncode == 1
    assert done.stderr.startswith("aicm-manual report: error: "), done.stderr
    assert "Traceback" not in done.stderr


def test_report_on_a_missing_database_fails_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A mistyped path is an error, as ``queue stats`` treats a missing spool, not an empty
    report over a database the read-only command just created."""
    missing = tmp_path / "typo" / "collector.db"
    code, _, err = run(capsys, "report", "--database", f"sqlite:///{missing}")
    assert code == 1
    assert "collector.db" in err
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-key", "bad tenant:aicm_key_123456"],
        ["--schemas", "no-such-schemas-dir"],
    ],
)
def test_serve_that_fails_to_start_leaves_no_storage_open(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    """``serve`` opens the database before it checks keys and schemas; when those checks
    fail, the storage it opened (and its writer thread) is closed again."""

    def writers() -> int:
        return sum(t.name == "aicm-sqlite-writer" for t in threading.enumerate())

    before = writers()
    code, _, err = run(capsys, "serve", "--database", f"sqlite:///{tmp_path / 'c.db'}", *argv)
    assert code == 1
    assert "error:" in err
    assert writers() == before
