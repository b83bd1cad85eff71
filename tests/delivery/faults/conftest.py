"""Fixtures for the delivery fault tests: a scriptable loopback collector and a tiny config
(the root conftest leaves no delivery engine over between tests). Every wait is bounded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from faults.scripted import CONFIG_ID, UNIT_CONFIG, Collector, handler


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A scriptable collector on 127.0.0.1 (ephemeral port); hung requests end at teardown."""
    state = Collector(configs={CONFIG_ID: UNIT_CONFIG})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            state.release.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)

    state.stop = stop
    try:
        yield state
    finally:
        stop()


@pytest.fixture(scope="session")
def schemas_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A schemas directory holding only the ``faults`` config."""
    folder = tmp_path_factory.mktemp("schemas")
    (folder / f"{CONFIG_ID}.json").write_text(json.dumps(UNIT_CONFIG))
    return folder
