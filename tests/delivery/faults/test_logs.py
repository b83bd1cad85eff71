"""Logs and messages say what happened, in the user's own terms."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import (
    ConfigError,
    ConfigFetchError,
    DeliveryError,
    Tracker,
    get_global_delivery_health,
    reset_global_delivery,
)
from faults.scripted import (
    CONFIG_ID,
    NO_INI,
    USAGE,
    Collector,
    child_env,
    closed_port_url,
    make_tracker,
    wait_for,
)


@pytest.mark.parametrize("mode", ["mem_queue", "persistent_queue"])
def test_queued_modes_log_each_sent_batch_at_debug(
    schemas_dir: Path,
    collector: Collector,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    """A batch sent by the worker is logged at DEBUG with its endpoint and record count."""
    caplog.set_level(logging.DEBUG, logger="aicm_manual")
    tracker = make_tracker(
        schemas_dir,
        collector.url,
        delivery_type=mode,
        db_path=tmp_path / "spool.db",
        delivery_options={"batch_interval": 0.5},
    )
    tracker.track_batch([{"usage": USAGE} for _ in range(3)])
    assert tracker.flush(10) == 0
    assert len(collector.ids_for("sk-a")) == 3
    sent = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("aicm_manual")
        and r.levelno == logging.DEBUG
        and collector.url in r.getMessage()
        and "3" in r.getMessage().replace(collector.url, "")
    ]
    assert sent, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"delivery_options": {"queue_size": 10}}, "queue_size"),
        ({"delivery_options": {"batch_size": "many"}}, "batch_size"),
        ({"delivery_on_full": "sometimes"}, "delivery_on_full"),
    ],
    ids=["queue_size-check", "batch_size-parse", "on_full-parse"],
)
def test_setting_errors_name_the_keyword_not_an_unset_variable(
    schemas_dir: Path, kwargs: dict[str, Any], named: str
) -> None:
    """A bad keyword argument's ConfigError names that argument, not an AICM_* variable."""
    with pytest.raises(ConfigError) as info:
        make_tracker(schemas_dir, closed_port_url(), **kwargs)
    message = str(info.value)
    assert "AICM_" not in message, message
    assert named in message, message


def test_no_key_is_not_reported_as_a_refused_key(collector: Collector) -> None:
    """A 401 when no API key is configured says no key was given, not that it was refused."""
    collector.config_status = 401
    with pytest.raises(ConfigFetchError) as info:
        Tracker(CONFIG_ID, aicm_api_base=collector.url, environ=NO_INI)
    message = str(info.value)
    assert "refused the API key" not in message, message
    assert "key" in message.lower(), message


def test_messages_carry_no_raw_bytes(schemas_dir: Path, collector: Collector) -> None:
    """HTTP error bodies appear as text in DeliveryError and health, never as b'...'."""
    collector.keys = {"some-other-key"}
    immediate = make_tracker(schemas_dir, collector.url, delivery_type="immediate")
    with pytest.raises(DeliveryError) as info:
        immediate.track(USAGE)
    queued = make_tracker(schemas_dir, collector.url)
    queued.track(USAGE)
    assert wait_for(lambda: get_global_delivery_health()["last_error"] is not None, timeout=5)
    health = get_global_delivery_health()
    texts = [str(info.value), str(health["last_error"])]
    texts += [str(v["last_error"]) for v in health["per_key"].values()]
    for text in texts:
        assert "b'" not in text, text
        assert 'b"' not in text, text


def write_ini(tmp_path: Path) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    ini = folder / "AICM.INI"
    ini.write_text("[delivery]\ndelivery_type = persistent_queue\ndb_path = spool.db\n")
    (tmp_path / "work").mkdir()
    return ini


def test_ini_db_path_is_relative_to_the_ini_file(
    schemas_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative db_path in AICM.INI is found next to the INI file, like its other paths."""
    ini = write_ini(tmp_path)
    monkeypatch.chdir(tmp_path / "work")
    tracker = make_tracker(schemas_dir, closed_port_url(), aicm_ini_path=ini)
    tracker.track(USAGE)
    assert (tmp_path / "conf" / "spool.db").exists(), sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("spool.db")
    )
    assert not (tmp_path / "work" / "spool.db").exists()


def test_cli_reads_the_ini_db_path_relative_to_the_ini_file(
    schemas_dir: Path, tmp_path: Path
) -> None:
    """`aicm-manual queue stats --ini` resolves db_path next to the INI file too."""
    ini = write_ini(tmp_path)
    spool = tmp_path / "conf" / "spool.db"
    maker = make_tracker(  # a real spool where the INI says, named by its absolute path
        schemas_dir, closed_port_url(), delivery_type="persistent_queue", db_path=spool
    )
    maker.track(USAGE)
    reset_global_delivery(timeout=0)
    proc = subprocess.run(
        [sys.executable, "-m", "aicm_manual", "queue", "stats", "--json", "--ini", str(ini)],
        cwd=tmp_path / "work",
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["path"]) == spool
