"""A persistent_queue tracker whose config comes from the collector starts
while the collector is down when it has fetched that config before (a last good copy on
disk); with no copy it fails with one clear ConfigFetchError line naming schemas_dir.

Each start is a fresh Python process (nothing cached in memory) with its own HOME and
XDG_CACHE_HOME under tmp_path, so the on-disk copy is isolated per test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faults.scripted import CONFIG_ID, SERVICE_ID, Collector, child_env, closed_port_url, run_python

START = """
import json, sys
from aicm_manual import Tracker
p = json.loads(sys.argv[1])
try:
    tracker = Tracker(p["config_id"], p["service_id"], aicm_api_base=p["url"],
                      aicm_api_key="sk-offline", delivery_type="persistent_queue",
                      db_path=p["db"], delivery_options={"exit_budget": 0.5})
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
    sys.exit(0)
rid = tracker.track({"units": 1})
left = tracker.close(p["close"])
print(json.dumps({"tracked": rid, "left": left}), flush=True)
"""


def start(tmp_path: Path, url: str, close: float) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = child_env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    params = {
        "config_id": CONFIG_ID,
        "service_id": SERVICE_ID,
        "url": url,
        "db": str(tmp_path / "spool.db"),
        "close": close,
    }
    proc = run_python(START, json.dumps(params), timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_starts_offline_from_the_last_good_config(collector: Collector, tmp_path: Path) -> None:
    """Seen once from the collector, the config lets a later process start (and spool) while
    the collector is down."""
    online = start(tmp_path, collector.url, close=5)
    assert "error" not in online, online
    assert online["left"] == 0
    url = collector.url
    collector.stop()  # the collector is down from here on

    offline = start(tmp_path, url, close=0.2)
    assert "error" not in offline, f"could not start offline: {offline}"
    assert offline["tracked"]


def test_no_copy_fails_with_one_clear_line_naming_schemas_dir(tmp_path: Path) -> None:
    """Never seen and the collector down: one ConfigFetchError line that mentions schemas_dir."""
    result = start(tmp_path, closed_port_url(), close=0.2)
    assert result.get("error") == "ConfigFetchError", result
    message = result["message"]
    assert "schemas_dir" in message, message
    assert "\n" not in message.strip(), message
