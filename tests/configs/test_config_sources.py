"""Config sources: a local schemas directory, and the collector over real loopback HTTP."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from aicm_manual import (
    ConfigError,
    ConfigFetchError,
    ConfigNotFoundError,
    DirectoryConfigSource,
    HttpConfigSource,
    Secret,
    TypeStringError,
)
from aicm_manual._configs.sources import shared_http_source
from conftest import ConfigServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write_config(folder: Path, config_id: str, schema: dict[str, str]) -> Path:
    data = {
        "config_id": config_id,
        "manual_usage_schema": schema,
        "services": [{"service_id": "svc"}],
    }
    file = folder / f"{config_id}.json"
    file.write_text(json.dumps(data))
    return file


def test_directory_loads_every_example_config(schemas_dir: Path) -> None:
    configs = DirectoryConfigSource(schemas_dir).all()
    assert [c.config_id for c in configs] == [
        "anthropic",
        "heygen",
        "internal-api",
        "llm",
        "openai-chat",
        "openai",
    ]
    chat = DirectoryConfigSource(schemas_dir).get("openai-chat")
    assert chat.manual_usage_schema["tool_calls"] == "Optional[Dict[str, int]]"
    assert chat.service("openai::gpt-4o-mini").pricing is not None
    llm = DirectoryConfigSource(schemas_dir).get("llm")
    assert llm.service("anthropic::claude-sonnet-4-5").service_id == "anthropic::*"


def test_directory_unknown_config_raises_not_found(schemas_dir: Path) -> None:
    with pytest.raises(ConfigNotFoundError, match="'nope' not found"):
        DirectoryConfigSource(schemas_dir).get("nope")


def test_directory_rejects_path_traversal_ids(schemas_dir: Path) -> None:
    """An id cannot name a file outside the directory."""
    with pytest.raises(ConfigNotFoundError, match="not a valid config id"):
        DirectoryConfigSource(schemas_dir / "sub").get("../openai-chat")


def test_bad_type_string_names_file_and_field(tmp_path: Path) -> None:
    file = write_config(tmp_path, "broken", {"tokens": "int", "tags": "List[str]]"})
    with pytest.raises(TypeStringError) as info:
        DirectoryConfigSource(tmp_path).get("broken")
    message = str(info.value)
    assert str(file) in message
    assert "'tags'" in message
    assert "unmatched ']' at position 9" in message
    assert info.value.field == "tags"
    assert info.value.position == 9


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"config_id": "bad",\n  "x": }')
    with pytest.raises(ConfigError, match=r"bad\.json: invalid JSON at line 2 column"):
        DirectoryConfigSource(tmp_path).get("bad")


def test_file_name_must_match_config_id(tmp_path: Path) -> None:
    file = write_config(tmp_path, "one", {"n": "int"})
    file.rename(tmp_path / "two.json")
    with pytest.raises(ConfigError, match="does not match the file name 'two'"):
        DirectoryConfigSource(tmp_path).get("two")


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        DirectoryConfigSource(tmp_path / "absent").get("x")


def test_http_fetches_config_with_bearer_key(config_server: ConfigServer) -> None:
    config_server.api_key = "sk-test-123"
    source = HttpConfigSource(config_server.url, Secret("sk-test-123"), ttl=60)
    config = source.get("heygen")
    assert config.manual_usage_schema["duration"] == "float"
    path, headers = config_server.seen[0]
    assert path == "/api/v1/configs/heygen"
    assert headers["authorization"] == "Bearer sk-test-123"


def test_http_asks_once_per_ttl_then_revalidates_with_etag(config_server: ConfigServer) -> None:
    clock = FakeClock()
    source = HttpConfigSource(config_server.url, None, ttl=30, clock=clock)
    first = source.get("openai-chat")
    for _ in range(50):
        assert source.get("openai-chat") is first
    assert len(config_server.seen) == 1
    assert "if-none-match" not in config_server.seen[0][1]

    clock.now += 31  # past the TTL: one conditional request, answered 304
    assert source.get("openai-chat") is first
    assert len(config_server.seen) == 2
    assert config_server.seen[1][1]["if-none-match"] == config_server.etag("openai-chat")
    assert source.get("openai-chat") is first
    assert len(config_server.seen) == 2


def test_http_changed_config_is_picked_up_after_ttl(config_server: ConfigServer) -> None:
    clock = FakeClock()
    source = HttpConfigSource(config_server.url, None, ttl=10, clock=clock)
    assert "region" in source.get("internal-api").manual_usage_schema
    config_server.configs["internal-api"]["manual_usage_schema"]["extra"] = "List[int]"
    assert "extra" not in source.get("internal-api").manual_usage_schema  # still fresh
    clock.now += 11
    assert source.get("internal-api").manual_usage_schema["extra"] == "List[int]"


def test_http_unknown_config_is_not_found(config_server: ConfigServer) -> None:
    source = HttpConfigSource(config_server.url, None, ttl=60)
    with pytest.raises(ConfigNotFoundError, match="'missing' not found"):
        source.get("missing")


def test_http_refused_key_is_a_fetch_error_without_the_key(config_server: ConfigServer) -> None:
    config_server.api_key = "right-key"
    source = HttpConfigSource(config_server.url, Secret("wrong-key-value"), ttl=60)
    with pytest.raises(ConfigFetchError) as info:
        source.get("heygen")
    assert info.value.status == 401
    assert "wrong-key-value" not in str(info.value)
    assert "wrong-key-value" not in repr(info.value)


def test_http_server_error_is_a_fetch_error(config_server: ConfigServer) -> None:
    config_server.force_status = 503
    source = HttpConfigSource(config_server.url, None, ttl=60)
    with pytest.raises(ConfigFetchError, match="HTTP 503") as info:
        source.get("heygen")
    assert info.value.status == 503


def test_http_unreachable_collector_is_a_fetch_error() -> None:
    """A closed loopback port: the requests exception is translated, not leaked."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = HttpConfigSource(f"http://127.0.0.1:{port}", None, ttl=60)
    with pytest.raises(ConfigFetchError) as info:
        source.get("heygen")
    assert info.value.status is None
    assert info.value.__cause__ is not None


def test_http_bad_type_string_raises_at_load(config_server: ConfigServer) -> None:
    config_server.configs["heygen"]["manual_usage_schema"]["duration"] = "Dict[str]"
    source = HttpConfigSource(config_server.url, None, ttl=60)
    with pytest.raises(TypeStringError, match="Dict takes 2 type arguments") as info:
        source.get("heygen")
    assert info.value.field == "duration"
    assert "/api/v1/configs/heygen" in str(info.value)


def test_shared_source_serves_concurrent_trackers_with_one_request(
    config_server: ConfigServer,
) -> None:
    source = shared_http_source(config_server.url, None, 60)
    assert shared_http_source(config_server.url, None, 60) is source
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(source.get("heygen"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 8
    assert len({id(r) for r in results}) == 1
    assert len(config_server.seen) == 1


def test_http_keeps_a_last_good_copy_and_revalidates_it_with_its_etag(
    config_server: ConfigServer, tmp_path: Path
) -> None:
    """A fresh process's source revalidates the saved copy (304) instead of downloading it."""
    first = HttpConfigSource(config_server.url, None, ttl=60, cache_dir=tmp_path)
    assert first.get("heygen").config_id == "heygen"
    config_server.seen.clear()
    second = HttpConfigSource(config_server.url, None, ttl=60, cache_dir=tmp_path)
    assert second.get("heygen").config_id == "heygen"
    [(path, headers)] = config_server.seen
    assert path == "/api/v1/configs/heygen"
    assert headers.get("if-none-match") == config_server.etag("heygen")


def test_http_uses_the_saved_copy_while_the_collector_fails(
    config_server: ConfigServer, tmp_path: Path
) -> None:
    """A 5xx from the collector falls back to the last good copy on disk."""
    HttpConfigSource(config_server.url, None, ttl=60, cache_dir=tmp_path).get("heygen")
    config_server.force_status = 503
    later = HttpConfigSource(config_server.url, None, ttl=60, cache_dir=tmp_path)
    assert later.get("heygen").config_id == "heygen"


def test_http_no_copy_and_no_collector_is_one_line_naming_schemas_dir(tmp_path: Path) -> None:
    """Never fetched and unreachable: one line that says how to run offline."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = HttpConfigSource(f"http://127.0.0.1:{port}", None, ttl=60, cache_dir=tmp_path)
    with pytest.raises(ConfigFetchError) as info:
        source.get("heygen")
    message = str(info.value)
    assert "\n" not in message
    assert "connection refused" in message
    assert "schemas_dir" in message


def test_http_401_without_a_key_says_no_key_was_given(config_server: ConfigServer) -> None:
    """A 401 when no key is configured is not reported as a refused key."""
    config_server.api_key = "sk-needed"
    source = HttpConfigSource(config_server.url, None, ttl=60)
    with pytest.raises(ConfigFetchError, match="none was given") as info:
        source.get("heygen")
    assert "refused" not in str(info.value)
