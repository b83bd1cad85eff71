"""Tracker breadth without a socket: the track() forms, routes to configs, defaults and
anonymisation, batches, settings and logging (CapturingDelivery receives the records)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import (
    BatchValidationError,
    ConfigError,
    ConfigNotFoundError,
    InvalidRecordError,
    Tracker,
    UsageValidationError,
)
from aicm_manual.testing import CapturingDelivery

CHAT = {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 20}
TOKENS = {"input_tokens": 100, "output_tokens": 50}
NO_ENV: dict[str, str] = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}


def make(*args: str, **kwargs: Any) -> tuple[Tracker, CapturingDelivery]:
    delivery = CapturingDelivery()
    kwargs.setdefault("environ", NO_ENV)
    tracker = Tracker(*args, schemas_dir="schemas", delivery=delivery, **kwargs)
    return tracker, delivery


def test_vendor_service_usage_form_routes_to_the_config_listing_the_service() -> None:
    tracker, delivery = make()
    tracker.track("openai", "gpt-4o-mini", CHAT)  # exact entry in openai-chat
    tracker.track("openai", "gpt-5-mini", TOKENS)  # openai::* in llm
    tracker.track("anthropic::claude-sonnet-4-5", TOKENS)  # two-argument form
    tracker.track("acme", "geocoder-v9", {"anything": [1, 2]})  # no config lists it
    wire = delivery.wire()
    assert [(w.get("config_id"), w["service_id"]) for w in wire] == [
        ("openai-chat", "openai::gpt-4o-mini"),
        ("llm", "openai::gpt-5-mini"),
        ("llm", "anthropic::claude-sonnet-4-5"),
        (None, "acme::geocoder-v9"),
    ]
    assert "config_id" not in wire[3]  # the collector files it by service


def test_records_are_checked_against_the_schema_of_their_own_config() -> None:
    tracker, delivery = make()
    with pytest.raises(UsageValidationError) as info:
        tracker.track("openai", "gpt-4o-mini", TOKENS)  # openai-chat requires model
    assert info.value.missing_fields == ["model"]
    with pytest.raises(UsageValidationError, match="output_tokens"):
        tracker.track("openai", "gpt-5-mini", {"input_tokens": 1, "output_tokens": "2"})
    assert delivery.records == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, "gpt", TOKENS), {}, "must be strings"),
        (("openai", "gpt", TOKENS), {"service_id": "x::y"}, "given twice"),
        (("openai::x", "gpt", TOKENS), {}, "vendor"),
        ((["openai::x"], TOKENS), {}, "must be a string"),
    ],
)
def test_bad_seed_forms_say_what_is_wrong(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    tracker, _ = make()
    with pytest.raises(InvalidRecordError, match=message):
        tracker.track(*args, **kwargs)


def test_a_tracker_without_a_service_needs_one_per_record() -> None:
    tracker, delivery = make()
    assert tracker.config is None
    assert tracker.validator is None
    with pytest.raises(InvalidRecordError, match="service_id is required"):
        tracker.track(TOKENS)
    tracker.track(TOKENS, service_id="openai::gpt-4.1")
    assert delivery.records[0].config_id == "llm"


def test_config_without_service_argument(tmp_path: Path) -> None:
    config = {"config_id": "one", "manual_usage_schema": {"n": "int"}}
    (tmp_path / "one.json").write_text(json.dumps({**config, "services": [{"service_id": "a::b"}]}))
    single = Tracker("one", schemas_dir=tmp_path, delivery=CapturingDelivery(), environ=NO_ENV)
    assert single.service_id == "a::b"  # one service: it is the default
    two, _ = make("heygen")  # two services: records must name theirs
    with pytest.raises(InvalidRecordError, match="service_id is required"):
        two.track({"duration": 1.5})
    llm, delivery = make("llm")  # only patterns: the service comes per record
    with pytest.raises(InvalidRecordError, match="service_id is required"):
        llm.track(TOKENS)
    llm.track(TOKENS, service_id="google::gemini-2.0-flash")
    assert (delivery.records[0].config_id, delivery.records[0].service_id) == (
        "llm",
        "google::gemini-2.0-flash",
    )
    with pytest.raises(ConfigNotFoundError, match="mistral::large"):
        llm.track(TOKENS, service_id="mistral::large")


def test_per_record_config_overrides_the_trackers() -> None:
    tracker, delivery = make("heygen", "heygen::streaming-avatar")
    tracker.track(CHAT, config_id="openai-chat", service_id="openai::gpt-4o")
    with pytest.raises(UsageValidationError):
        tracker.track({"duration": 2.0}, config_id="openai-chat", service_id="openai::gpt-4o")
    with pytest.raises(ConfigNotFoundError):
        tracker.track(CHAT, config_id="nope", service_id="openai::gpt-4o")
    assert [r.config_id for r in delivery.records] == ["openai-chat"]


def test_defaults_apply_and_per_record_values_win() -> None:
    tracker, delivery = make(
        "heygen", "heygen::streaming-avatar", client_customer_key="acme", context={"env": "prod"}
    )
    context = {"env": "staging", "tags": ["a"]}
    tracker.track({"duration": 1.0})
    tracker.track({"duration": 1.0}, client_customer_key="globex", context=context)
    tracker.set_customer_key("initech")
    default_context = {"env": "dev", "nested": {"k": 1}}
    tracker.set_context(default_context)
    default_context["nested"]["k"] = 2  # the tracker kept a copy
    tracker.track({"duration": 1.0})
    tracker.set_customer_key(None)
    tracker.set_context(None)
    tracker.track({"duration": 1.0})
    got = [(r.client_customer_key, r.context) for r in delivery.records]
    assert got == [
        ("acme", {"env": "prod"}),
        ("globex", {"env": "staging", "tags": ["a"]}),
        ("initech", {"env": "dev", "nested": {"k": 1}}),
        (None, None),
    ]
    with pytest.raises(InvalidRecordError):
        tracker.set_customer_key("")
    with pytest.raises(InvalidRecordError):
        tracker.set_context(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_anonymised_fields_are_replaced_at_any_depth_before_checks_and_sending() -> None:
    tracker, delivery = make(anonymize_fields=["email"])
    usage = {"input_tokens": 1, "output_tokens": 2, "model": "m"}
    context = {"user": {"email": "jo@acme.com", "teams": [{"email": "t@acme.com"}]}}
    tracker.track("openai", "gpt-5", usage, context=context)
    assert delivery.records[0].context == {
        "user": {"email": "[anonymized]", "teams": [{"email": "[anonymized]"}]}
    }
    assert context["user"]["email"] == "jo@acme.com"  # the caller's data is untouched


def test_anonymizer_output_is_what_gets_validated() -> None:
    # internal-api's geocoder schema has a str field we anonymise; an int replacement fails.
    tracker, delivery = make(anonymize_fields={"model"}, anonymizer=lambda v: 0)
    with pytest.raises(UsageValidationError, match="model"):
        tracker.track("openai", "gpt-4o-mini", CHAT)
    assert delivery.records == []


def test_track_batch_aliases_defaults_and_timestamps() -> None:
    tracker, delivery = make(client_customer_key="default-customer", context={"env": "prod"})
    when = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    records = [
        {"service_key": "openai::gpt-4", "usage": TOKENS, "customer_key": "customer_1"},
        {
            "service_id": "anthropic::claude-3",
            "usage": {"input_tokens": 200, "output_tokens": 75},
            "context": {"session": "abc"},
            "timestamp": "2024-01-15T10:30:00Z",
            "response_id": "request_2",
        },
        {
            "service_key": "heygen::streaming-avatar",
            "usage": {"duration": 120.5},
            "timestamp": when,
        },
    ]
    result = tracker.track_batch(records)
    assert result["queued"] == 3
    assert result["response_ids"][1] == "request_2"
    got = delivery.records
    assert [r.response_id for r in got] == result["response_ids"]
    assert [r.config_id for r in got] == ["llm", "llm", "heygen"]
    assert [r.client_customer_key for r in got] == [
        "customer_1",
        "default-customer",
        "default-customer",
    ]
    assert [r.context for r in got] == [{"env": "prod"}, {"session": "abc"}, {"env": "prod"}]
    assert got[1].timestamp == when
    assert got[2].timestamp == when


def test_track_batch_sends_nothing_when_any_record_is_invalid() -> None:
    tracker, delivery = make()
    records: list[Any] = [
        {"service_key": "openai::gpt-4", "usage": TOKENS},
        {"service_key": "openai::gpt-4", "usage": {"input_tokens": "100", "output_tokens": 1}},
        {"usage": TOKENS},  # no service and no default
        {"service_key": "openai::gpt-4", "usage": TOKENS, "colour": "red"},
        {"service_key": "openai::a", "service_id": "openai::b", "usage": TOKENS},
        "not a record",
        {"service_key": "openai::gpt-4", "usage": TOKENS, "response_id": "same"},
        {"service_key": "openai::gpt-4", "usage": TOKENS, "response_id": "same"},
        {"service_key": "heygen::streaming-avatar", "usage": {"duration": 1}, "timestamp": "x"},
    ]
    with pytest.raises(BatchValidationError) as info:
        tracker.track_batch(records)
    error = info.value
    assert sorted(error.problems) == [1, 2, 3, 4, 5, 7, 8]
    assert error.total == 9
    assert error.errors["[1].input_tokens"] == ["input_tokens: expected int, got str '100'"]
    assert "service_id is required" in error.errors["[2]"][0]
    assert "colour" in error.errors["[3]"][0]
    assert "disagree" in error.errors["[4]"][0]
    assert "repeats record 6" in error.errors["[7]"][0]
    assert "7 of 9 records cannot be sent" in str(error)
    assert isinstance(error, UsageValidationError)
    assert delivery.records == []


def test_track_batch_has_no_size_limit_and_takes_any_iterable() -> None:
    tracker, delivery = make("heygen", "heygen::streaming-avatar")
    result = tracker.track_batch({"usage": {"duration": float(i)}} for i in range(2_500))
    assert result["queued"] == 2_500
    assert len(set(result["response_ids"])) == 2_500
    assert [r.usage["duration"] for r in delivery.records] == [float(i) for i in range(2_500)]


def test_track_batch_anonymises_on_top_of_the_trackers_fields() -> None:
    tracker, delivery = make(anonymize_fields=["user_id"])
    records = [
        {"service_key": "acme::search", "usage": {"user_email": "jo@acme.com", "user_id": 7}},
        {"service_key": "acme::search", "usage": {"n": 1}, "context": {"user_email": "x@y"}},
    ]
    tracker.track_batch(records, anonymize_fields=["user_email"], anonymizer=lambda v: "R")
    assert [r.usage for r in delivery.records] == [
        {"user_email": "R", "user_id": "R"},
        {"n": 1},
    ]
    assert delivery.records[1].context == {"user_email": "R"}


def test_log_bodies_redacts_keys_and_anonymised_fields(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "aicm.log"
    secret = "aicm_live_secret_value_123"
    tracker, _ = make(
        aicm_api_key=secret,
        log_file=log_file,
        log_level="DEBUG",
        log_bodies=True,
        anonymize_fields=["email"],
    )
    try:
        tracker.track(
            "acme",
            "search",
            {"queries": 3, "input_tokens": 9},
            context={"api_key": secret, "email": "jo@acme.com", "Authorization": "Bearer x"},
        )
        for handler in logging.getLogger("aicm_manual").handlers:
            handler.flush()
        text = log_file.read_text()
    finally:
        logging.getLogger("aicm_manual").setLevel(logging.NOTSET)
    assert "aicm: tracked" in text
    assert '"queries": 3' in text
    assert '"input_tokens": 9' in text  # "token" inside a usage name is not a secret
    assert secret not in text
    assert "jo@acme.com" not in text
    assert "Bearer x" not in text
    assert text.count("[redacted]") == 3


def test_logging_settings_follow_the_precedence(tmp_path: Path) -> None:
    ini = tmp_path / "AICM.INI"
    ini.write_text("[aicm]\nAICM_LOG_LEVEL = warning\nAICM_LOG_BODIES = yes\n")
    env = {"AICM_INI_PATH": str(ini)}
    tracker, _ = make(environ=env)
    assert (tracker.settings.log_level, tracker.settings.log_bodies) == ("WARNING", True)
    tracker, _ = make(environ={**env, "AICM_LOG_LEVEL": "info", "AICM_LOG_BODIES": "0"})
    assert (tracker.settings.log_level, tracker.settings.log_bodies) == ("INFO", False)
    tracker, _ = make(environ=env, log_level="ERROR", log_bodies=False)
    assert (tracker.settings.log_level, tracker.settings.log_bodies) == ("ERROR", False)
    logging.getLogger("aicm_manual").setLevel(logging.NOTSET)
    with pytest.raises(ConfigError, match="AICM_LOG_LEVEL"):
        make(environ={**env, "AICM_LOG_LEVEL": "chatty"})
    with pytest.raises(ConfigError, match="AICM_LOG_BODIES"):
        make(environ={**env, "AICM_LOG_BODIES": "perhaps"})


def test_ini_is_read_never_written_and_a_stale_lock_changes_nothing(tmp_path: Path) -> None:
    ini = tmp_path / "AICM.INI"
    ini.write_text("[delivery]\nbatch_size = 250\n")
    lock = tmp_path / "AICM.INI.lock"
    lock.write_text("12345")  # left behind by a crashed process of another SDK
    before = (ini.read_bytes(), ini.stat().st_mtime_ns)
    tracker = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_ini_path=ini,
        schemas_dir="schemas",
        environ={},
        db_path=tmp_path / "spool.db",
    )
    assert tracker.delivery_settings.batch_size == 250
    tracker.close(timeout=0)
    assert (ini.read_bytes(), ini.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AICM.INI", "AICM.INI.lock"]
