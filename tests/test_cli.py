"""``aicm-manual queue ...`` against real spool files built with the Spool API."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aicm_manual._delivery.spool import Spool
from aicm_manual.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0
NOW = T0 + 125.0  # every queued row is 2m05s old when the CLI looks
KEY_A = hashlib.sha256(b"sk-alpha").hexdigest()
ABBR_A = "sha256:" + KEY_A[:8]  # how every report names a key
BASE = "http://127.0.0.1:8700"


def body(response_id: str, input_tokens: int = 3) -> bytes:
    return json.dumps(
        {
            "config_id": "openai-chat",
            "service_id": "openai::gpt-4o",
            "response_id": response_id,
            "timestamp": "2023-11-14T22:13:20.000000Z",
            "usage": {"input_tokens": input_tokens},
            "client_customer_key": "acme-secret-customer",
            "context": {"note": "private-context"},
        }
    ).encode()


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    """Queued: ids 1, 2 (KEY_A; 1 leased) and 3 (anonymous). Dead: 1 (KEY_A), 2 (anonymous)."""
    path = tmp_path / "spool.db"
    spool = Spool(path, clock=lambda: T0)
    spool.put(KEY_A, BASE, "resp-1", body("resp-1"))
    spool.put(KEY_A, BASE, "resp-2", body("resp-2"))
    spool.put("anonymous", BASE, "resp-3", body("resp-3"))
    spool.put(KEY_A, BASE, "resp-4", body("resp-4", input_tokens=-1))
    assert spool.take_in(10) == 4  # queue ids 1-4, as a worker would give them
    assert [r.id for r in spool.claim({KEY_A}, limit=1, lease_seconds=3600)] == [1]
    [rejected] = [r for r in spool.rows() if r.response_id == "resp-4"]
    spool.dead_letter([(rejected, "rejected: input_tokens: must be >= 0")])
    spool.add_dead_letters([("anonymous", BASE, "resp-mem", body("resp-mem"), "conflict")])
    spool.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={}, clock=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out, err


def counts(path: Path) -> tuple[int, int]:
    spool = Spool(path)
    try:
        stats = spool.stats()
        return stats["records"], stats["dead_letters"]
    finally:
        spool.close()


def test_stats_table_counts_queued_leased_and_dead_per_truncated_key_ref(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "stats", "--db", str(spool_path))
    assert code == 0
    assert "queued records: 3 (1 leased), oldest 2m05s old" in out
    assert "dead letters: 2" in out
    assert ABBR_A in out
    assert KEY_A[:9] not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[5:]}
    assert rows == {ABBR_A: ["2", "1", "2m05s", "1"], "anonymous": ["1", "0", "2m05s", "1"]}


def test_stats_json_parses_and_holds_only_truncated_key_refs(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "stats", "--db", str(spool_path), "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["records"], data["leased"], data["dead_letters"]) == (3, 1, 2)
    assert data["oldest_age_seconds"] == 125.0
    assert data["keys"][0] == {
        "key_ref": ABBR_A,
        "records": 2,
        "leased": 1,
        "oldest_enqueued_at": T0,
        "oldest_age_seconds": 125.0,
        "dead_letters": 1,
    }
    assert KEY_A[:9] not in out


def test_stats_lists_a_key_that_only_has_dead_letters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.db", clock=lambda: T0)
    spool.add_dead_letters([(KEY_A, BASE, "resp-1", body("resp-1"), "rejected")])
    spool.close()
    code, out, _ = run(capsys, "queue", "stats", "--db", str(tmp_path / "spool.db"), "--json")
    assert code == 0
    [key] = json.loads(out)["keys"]
    assert key["dead_letters"] == 1
    assert key["records"] == 0
    assert key["oldest_age_seconds"] is None


def test_list_shows_ids_and_record_fields_but_not_usage_context_or_customer(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "list", "--db", str(spool_path))
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == [
        "ID", "RESPONSE", "ID", "KEY", "REF", "API", "BASE", "CONFIG", "ID", "SERVICE", "ID",
        "AGE", "ATTEMPTS",
    ]  # fmt: skip
    assert [line.split() for line in lines] == [
        ["1", "resp-1", ABBR_A, BASE, "openai-chat", "openai::gpt-4o", "2m05s", "1"],
        ["2", "resp-2", ABBR_A, BASE, "openai-chat", "openai::gpt-4o", "2m05s", "0"],
        ["3", "resp-3", "anonymous", BASE, "openai-chat", "openai::gpt-4o", "2m05s", "0"],
    ]
    for private in ("input_tokens", "private-context", "acme-secret-customer", KEY_A[:9]):
        assert private not in out


def test_list_show_usage_adds_the_usage_payload_and_nothing_else_of_the_body(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "list", "--db", str(spool_path), "--show-usage")
    assert code == 0
    assert out.count('usage: {"input_tokens": 3}') == 3
    assert "private-context" not in out
    assert "acme-secret-customer" not in out


def test_list_dead_shows_failed_at_and_reason(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "list", "--db", str(spool_path), "--dead")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[-3:] == ["FAILED", "AT", "REASON"]
    assert "ATTEMPTS" not in lines[0]
    assert lines[1].split()[:3] == ["1", "resp-4", ABBR_A]
    assert lines[1].endswith("2023-11-14T22:13:20Z  rejected: input_tokens: must be >= 0")
    assert lines[2].endswith("conflict")


def test_list_json_respects_limit_and_reports_the_total(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    argv = ["queue", "list", "--db", str(spool_path), "--limit", "2", "--json", "--show-usage"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    data = json.loads(out)
    assert (data["table"], data["total"]) == ("records", 3)
    assert [r["id"] for r in data["rows"]] == [1, 2]
    assert data["rows"][0] == {
        "id": 1,
        "response_id": "resp-1",
        "key_ref": ABBR_A,
        "api_base": BASE,
        "config_id": "openai-chat",
        "service_id": "openai::gpt-4o",
        "enqueued_at": T0,
        "age_seconds": 125.0,
        "attempts": 1,
        "usage": {"input_tokens": 3},
    }


def test_list_table_says_when_rows_are_left_out_by_the_limit(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    _, out, _ = run(capsys, "queue", "list", "--db", str(spool_path), "--limit", "1")
    assert out.splitlines()[-1] == "(1 of 3 shown; use --limit to see more)"


def test_list_shows_a_row_whose_body_is_not_json_with_dashes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.db", clock=lambda: T0)
    spool.put("anonymous", BASE, "resp-x", b"\xff not json")
    spool.close()
    code, out, _ = run(capsys, "queue", "list", "--db", str(tmp_path / "spool.db"))
    assert code == 0
    assert out.splitlines()[1].split() == ["1", "resp-x", "anonymous", BASE, "-", "-", "2m05s", "0"]


def test_list_of_an_empty_table_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    Spool(tmp_path / "spool.db").close()
    assert run(capsys, "queue", "list", "--db", str(tmp_path / "spool.db"), "--dead")[1] == (
        "no dead letters\n"
    )


def test_requeue_ids_moves_only_those_dead_letters_back_to_the_queue(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "requeue", "--db", str(spool_path), "--id", "1")
    assert (code, out) == (0, "1 requeued\n")
    assert counts(spool_path) == (4, 1)
    spool = Spool(spool_path)
    assert [r.response_id for r in spool.rows("records")][-1] == "resp-4"
    assert [r.response_id for r in spool.rows("dead_letters")] == ["resp-mem"]
    spool.close()


def test_requeue_all_moves_every_dead_letter(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    assert run(capsys, "queue", "requeue", "--db", str(spool_path), "--all")[:2] == (
        0,
        "2 requeued\n",
    )
    assert counts(spool_path) == (5, 0)


def test_requeue_counts_ids_that_match_no_dead_letter(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    _, out, _ = run(capsys, "queue", "requeue", "--db", str(spool_path), "--id", "2", "9", "9")
    assert out == "1 requeued (1 id(s) matched no dead letter)\n"
    assert counts(spool_path) == (4, 1)


def test_requeue_without_a_selection_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, _, err = run(capsys, "queue", "requeue", "--db", str(spool_path))
    assert code == 2
    assert "one of the arguments --all --id is required" in err
    assert counts(spool_path) == (3, 2)


def test_purge_of_ids_that_do_not_exist_purges_nothing(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, _ = run(capsys, "queue", "purge", "--db", str(spool_path), "--dead", "--id", "99")
    assert code == 0
    assert out.startswith("0 purged")
    assert counts(spool_path) == (3, 2)


def test_purge_ids_deletes_those_rows_of_the_chosen_table_only(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    assert run(capsys, "queue", "purge", "--db", str(spool_path), "--id", "2", "3")[1] == (
        "2 purged\n"
    )
    assert counts(spool_path) == (1, 2)


def test_purge_all_without_yes_refuses_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    code, out, err = run(capsys, "queue", "purge", "--db", str(spool_path), "--dead", "--all")
    assert (code, out) == (2, "")
    assert "--all would delete 2 dead letter(s)" in err
    assert "--yes" in err
    assert counts(spool_path) == (3, 2)


def test_purge_all_with_yes_empties_only_the_chosen_table(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    argv = ["queue", "purge", "--db", str(spool_path), "--dead", "--all", "--yes"]
    assert run(capsys, *argv)[:2] == (0, "2 purged\n")
    assert counts(spool_path) == (3, 0)
    assert run(capsys, "queue", "purge", "--db", str(spool_path), "--all", "--yes")[1] == (
        "3 purged\n"
    )
    assert counts(spool_path) == (0, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["stats"],
        ["list", "--dead"],
        ["requeue", "--all"],
        ["purge", "--all", "--yes"],
    ],
)
def test_missing_spool_exits_1_without_creating_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    path = tmp_path / "sub" / "spool.db"
    code, out, err = run(capsys, "queue", *argv, "--db", str(path))
    assert (code, out) == (1, "")
    assert f"no spool at {str(path)!r}" in err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_exits_1_with_the_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not SQLite, and long enough to have a header. " * 4)
    code, _, err = run(capsys, "queue", "stats", "--db", str(path))
    assert code == 1
    assert str(path) in err


def test_spool_path_comes_from_aicm_db_path_without_db(
    capsys: pytest.CaptureFixture[str], spool_path: Path, tmp_path: Path
) -> None:
    env = {"AICM_DB_PATH": str(spool_path), "AICM_INI_PATH": str(tmp_path / "none.ini")}
    assert main(["queue", "stats", "--json"], environ=env) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3


def test_spool_path_comes_from_the_ini_named_by_ini_or_aicm_ini_path(
    capsys: pytest.CaptureFixture[str], spool_path: Path, tmp_path: Path
) -> None:
    ini = tmp_path / "AICM.INI"
    ini.write_text(f"[delivery]\ndb_path = {spool_path}\n")
    assert main(["queue", "stats", "--json", "--ini", str(ini)], environ={}) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(spool_path)
    assert main(["queue", "stats", "--json"], environ={"AICM_INI_PATH": str(ini)}) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(spool_path)


def test_db_option_wins_over_aicm_db_path(
    capsys: pytest.CaptureFixture[str], spool_path: Path, tmp_path: Path
) -> None:
    env = {"AICM_DB_PATH": str(tmp_path / "elsewhere.db")}
    assert main(["queue", "stats", "--db", str(spool_path)], environ=env) == 0
    assert not (tmp_path / "elsewhere.db").exists()
    capsys.readouterr()


def test_default_spool_path_expands_the_home_folder(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "AICM_INI_PATH": str(tmp_path / "none.ini")}
    argv = [sys.executable, "-m", "aicm_manual", "queue", "stats"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert f"no spool at {str(tmp_path / '.cache' / 'aicm' / 'spool.db')!r}" in out.stderr


def test_no_command_or_a_bad_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    assert run(capsys, "queue")[0] == 2
    assert run(capsys, "queue", "list", "--db", str(spool_path), "--limit", "0")[0] == 2
    code, _, err = run(capsys, "queue", "purge", "--db", str(spool_path), "--id", "x")
    assert code == 2
    assert "expected a positive integer, got 'x'" in err


def test_python_m_aicm_manual_runs_queue_stats_in_a_subprocess(spool_path: Path) -> None:
    argv = [sys.executable, "-m", "aicm_manual", "queue", "stats", "--db", str(spool_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICM_")}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "queued records: 3 (" in out.stdout
    assert "dead letters: 2" in out.stdout


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_queue_subcommand_and_option_is_documented_in_docs_cli_md() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    queue = _subcommands(build_parser())["queue"]
    missing = []
    for name, sub in _subcommands(queue).items():
        if f"## `aicm-manual queue {name}`" not in doc:
            missing.append(name)
        options = {o for a in sub._actions for o in a.option_strings} - {"-h", "--help"}
        missing += [f"{name} {o}" for o in sorted(options) if f"`{o}" not in doc]
    assert missing == []


def test_stats_into_a_closed_pipe_ends_without_a_traceback(spool_path: Path) -> None:
    """`queue stats --json | head -1`: the CLI exits 0 and prints no BrokenPipeError."""
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert reader.stdin is not None
    env = {**os.environ, "AICM_INI_PATH": "/nonexistent/AICM.INI"}
    big = ["--db", str(spool_path)]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from aicm_manual.cli import main\n"
            "time.sleep(0.5)\n"  # head has read its byte and gone by then
            "for _ in range(200):\n"
            "    code = main(['queue', 'list', '--json', *sys.argv[1:]])\n"
            "sys.exit(code)\n",
            *big,
        ],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    reader.stdin.close()
    reader.wait(timeout=10)
    assert "BrokenPipeError" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0


def test_salvage_refuses_to_overwrite(
    spool_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`queue salvage` writes only a new file: an existing DST is an error, left untouched."""
    dst = tmp_path / "exists.db"
    dst.write_bytes(b"keep me")
    code, _, err = run(capsys, "queue", "salvage", str(spool_path), str(dst))
    assert code == 1
    assert "exists" in err
    assert dst.read_bytes() == b"keep me"


def test_salvage_of_a_sound_spool_copies_every_row(
    spool_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sound spool is copied whole: 4 queued rows less the dead one, 2 dead letters."""
    dst = tmp_path / "copy.db"
    code, out, _ = run(capsys, "queue", "salvage", str(spool_path), str(dst))
    assert code == 0
    assert "copied 3 queued record(s) and 2 dead letter(s)" in out
    assert "0 row(s) could not be read" in out
    copy = Spool(dst, create=False)
    try:
        assert sorted(r.response_id for r in copy.rows()) == ["resp-1", "resp-2", "resp-3"]
    finally:
        copy.close()


def test_records_still_in_the_inbox_are_listed_with_ids_and_purged(
    capsys: pytest.CaptureFixture[str], spool_path: Path
) -> None:
    """A record a caller wrote but no worker took in (its process died) is listed with a
    queue id of its own, which purge then accepts; purge --all empties the inbox too."""
    spool = Spool(spool_path)
    spool.put(KEY_A, BASE, "resp-late", body("resp-late"))
    spool.put(KEY_A, BASE, "resp-later", body("resp-later"))
    spool.close()
    code, out, _ = run(capsys, "queue", "list", "--db", str(spool_path), "--json")
    assert code == 0
    rows = {r["response_id"]: r["id"] for r in json.loads(out)["rows"]}
    assert set(rows) == {"resp-1", "resp-2", "resp-3", "resp-late", "resp-later"}
    argv = ["queue", "purge", "--db", str(spool_path), "--id", str(rows["resp-late"])]
    code, out, _ = run(capsys, *argv)
    assert (code, out.strip()) == (0, "1 purged")
    spool = Spool(spool_path)
    spool.put(KEY_A, BASE, "resp-last", body("resp-last"))
    spool.close()
    argv = ["queue", "purge", "--db", str(spool_path), "--all", "--yes"]
    assert run(capsys, *argv)[:2] == (0, "5 purged\n")  # 3 queued, 1 listed, 1 in the inbox
    assert Spool(spool_path).count() == 0
