"""Settings precedence: explicit argument > environment > AICM.INI > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicm_manual import ConfigError, Secret
from aicm_manual._settings import DEFAULT_API_BASE, DEFAULT_CONFIG_TTL, Settings


def write_ini(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "AICM.INI"
    path.write_text(body)
    return path


def test_defaults_without_env_or_ini(tmp_path: Path) -> None:
    s = Settings.resolve(aicm_ini_path=tmp_path / "none.ini", environ={})
    assert s.api_base == DEFAULT_API_BASE
    assert s.api_key is None
    assert s.schemas_dir is None
    assert s.config_ttl == DEFAULT_CONFIG_TTL


def test_ini_beats_default_env_beats_ini_argument_beats_env(tmp_path: Path) -> None:
    ini = write_ini(
        tmp_path,
        "[aicm]\nAICM_API_BASE = http://127.0.0.1:1111\nAICM_API_KEY = ini-key\n",
    )
    env = {"AICM_INI_PATH": str(ini)}
    assert Settings.resolve(environ=env).api_base == "http://127.0.0.1:1111"
    assert Settings.resolve(environ=env).api_key == Secret("ini-key")

    env["AICM_API_BASE"] = "http://127.0.0.1:2222/"
    env["AICM_API_KEY"] = "env-key"
    assert Settings.resolve(environ=env).api_base == "http://127.0.0.1:2222"
    assert Settings.resolve(environ=env).api_key == Secret("env-key")

    explicit = Settings.resolve(
        aicm_api_base="http://127.0.0.1:3333", aicm_api_key="arg-key", environ=env
    )
    assert explicit.api_base == "http://127.0.0.1:3333"
    assert explicit.api_key == Secret("arg-key")


def test_explicit_ini_path_beats_env_ini_path(tmp_path: Path) -> None:
    a = write_ini(tmp_path, "[aicm]\nAICM_API_BASE = http://127.0.0.1:1\n")
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = write_ini(b_dir, "[aicm]\nAICM_API_BASE = http://127.0.0.1:2\n")
    s = Settings.resolve(aicm_ini_path=b, environ={"AICM_INI_PATH": str(a)})
    assert s.api_base == "http://127.0.0.1:2"


def test_relative_schemas_dir_in_ini_is_relative_to_the_ini(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "[aicm]\nAICM_SCHEMAS_DIR = my-schemas\n")
    s = Settings.resolve(aicm_ini_path=ini, environ={})
    assert s.schemas_dir == tmp_path / "my-schemas"


def test_empty_env_value_falls_through_to_ini(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "[aicm]\nAICM_CONFIG_TTL = 12\n")
    s = Settings.resolve(aicm_ini_path=ini, environ={"AICM_CONFIG_TTL": ""})
    assert s.config_ttl == 12.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AICM_API_BASE": "ftp://x"}, "environment variable AICM_API_BASE has value 'ftp://x'"),
        ({"AICM_API_BASE": "http://h/?q=1"}, "takes no query"),
        ({"AICM_CONFIG_TTL": "soon"}, "Not a number of seconds"),
        ({"AICM_CONFIG_TTL": "-1"}, "zero or more"),
        ({"AICM_CONFIG_TTL": "nan"}, "zero or more"),
    ],
)
def test_invalid_values_name_the_setting_value_and_source(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    env = {"AICM_INI_PATH": str(tmp_path / "none"), **env}
    with pytest.raises(ConfigError, match=message):
        Settings.resolve(environ=env)


def test_unreadable_ini_is_a_config_error(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "this is not an ini file\n")
    with pytest.raises(ConfigError, match="cannot read settings file"):
        Settings.resolve(aicm_ini_path=ini, environ={})


def test_ini_is_never_written(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "[aicm]\nAICM_API_KEY = k\n")
    before = ini.read_bytes(), ini.stat().st_mtime_ns
    Settings.resolve(aicm_ini_path=ini, environ={})
    assert (ini.read_bytes(), ini.stat().st_mtime_ns) == before


def test_repr_masks_the_key() -> None:
    s = Settings.resolve(aicm_api_key="sk-very-secret", environ={"AICM_INI_PATH": "/nonexistent"})
    assert "sk-very-secret" not in repr(s)
    assert "[secure]" in repr(s)


def test_delivery_db_path_in_the_ini_is_relative_to_the_ini(tmp_path: Path) -> None:
    """Every path in AICM.INI, the spool's included, is relative to the INI file's folder."""
    from aicm_manual import DeliverySettings

    ini = write_ini(tmp_path, "[delivery]\ndb_path = spool/records.db\n")
    settings = Settings.resolve(aicm_ini_path=ini, environ={})
    delivery = DeliverySettings.resolve(sources=settings.sources)
    assert delivery.db_path == tmp_path / "spool" / "records.db"


def test_a_bad_keyword_argument_is_named_as_the_argument_not_a_variable() -> None:
    """An error about a value the caller passed names that argument, not an env variable."""
    from aicm_manual import DeliverySettings

    with pytest.raises(ConfigError) as caught:
        DeliverySettings.resolve({"queue_size": "many"}, environ={})
    assert "argument queue_size has value 'many'" in str(caught.value)
    assert "AICM_" not in str(caught.value)


def test_a_blank_api_key_is_a_config_error_naming_the_setting() -> None:
    """A blank key raises ConfigError (not a bare ValueError) naming where it came from."""
    with pytest.raises(ConfigError, match="environment variable AICM_API_KEY is blank"):
        Settings.resolve(environ={"AICM_API_KEY": "   ", "AICM_INI_PATH": "/nonexistent"})


@pytest.mark.parametrize(
    "key", ["sk-line\nbreak-SECRETPART", "sk-\x00nul-SECRETPART", "sk-ключ-SECRETPART"]
)
def test_a_key_http_cannot_carry_is_refused_without_showing_it(key: str) -> None:
    """A key with a control character or beyond Latin-1 is refused up front, masked."""
    with pytest.raises(ConfigError) as caught:
        Settings.resolve(aicm_api_key=key, environ={"AICM_INI_PATH": "/nonexistent"})
    assert "SECRETPART" not in str(caught.value)
    assert "argument aicm_api_key" in str(caught.value)


@pytest.mark.parametrize("key", ["sk-a\nSECRETPART", "sk-\u20acSECRETPART"])
def test_a_secret_key_is_checked_for_headers_too(key: str) -> None:
    """A key passed as a Secret is refused like a string when a header cannot carry it."""
    with pytest.raises(ConfigError) as info:
        Settings.resolve(aicm_api_key=Secret(key), environ={})
    assert "SECRETPART" not in str(info.value)
