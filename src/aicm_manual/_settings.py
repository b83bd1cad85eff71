"""Client settings: explicit argument > environment variable > AICM.INI > default.

    settings = Settings.resolve(aicm_api_base="http://127.0.0.1:8700", environ={})

The environment comes in as an argument (default ``os.environ``) so tests pass a dict.
The INI file is only read, never written: values the user tunes there stay theirs.
Its options live in an ``[aicm]`` section and are named like the variables:

    [aicm]
    AICM_API_KEY = ...
    AICM_SCHEMAS_DIR = schemas      ; relative to the INI file's folder
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._secret import Secret
from .errors import ConfigError

DEFAULT_API_BASE = "http://127.0.0.1:8700"
DEFAULT_INI_PATH = "~/.config/aicm/AICM.INI"
DEFAULT_CONFIG_TTL = 300.0
INI_SECTION = "aicm"


@dataclass(frozen=True)
class Settings:
    api_base: str = DEFAULT_API_BASE
    api_key: Secret | None = None
    ini_path: Path = Path(DEFAULT_INI_PATH)
    schemas_dir: Path | None = None
    config_ttl: float = DEFAULT_CONFIG_TTL
    ini: Mapping[str, Mapping[str, str]] | None = None  # every INI section, for later layers
    log_file: Path | None = None
    log_level: str | None = None  # None: leave the "aicm_manual" logger's level alone
    log_bodies: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        aicm_api_key: str | Secret | None = None,
        aicm_api_base: str | None = None,
        aicm_ini_path: str | os.PathLike[str] | None = None,
        schemas_dir: str | os.PathLike[str] | None = None,
        config_ttl: float | None = None,
        log_file: str | os.PathLike[str] | None = None,
        log_level: str | int | None = None,
        log_bodies: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        ini_path = Path(aicm_ini_path or env.get("AICM_INI_PATH") or DEFAULT_INI_PATH).expanduser()
        sections = read_ini(ini_path)
        ini = sections.get(INI_SECTION, {})

        def pick(explicit: object, name: str) -> tuple[object, str]:
            if explicit is not None:
                return explicit, "argument"
            if env.get(name):
                return env[name], "environment"
            if ini.get(name.lower()):
                return ini[name.lower()], str(ini_path)
            return None, "default"

        key, _ = pick(aicm_api_key, "AICM_API_KEY")
        base, base_from = pick(aicm_api_base, "AICM_API_BASE")
        schemas, schemas_from = pick(schemas_dir, "AICM_SCHEMAS_DIR")
        ttl, ttl_from = pick(config_ttl, "AICM_CONFIG_TTL")
        log_path, log_path_from = pick(log_file, "AICM_LOG_FILE")
        level, level_from = pick(log_level, "AICM_LOG_LEVEL")
        bodies, bodies_from = pick(log_bodies, "AICM_LOG_BODIES")
        return cls(
            api_base=_api_base(base, base_from),
            api_key=key if isinstance(key, Secret) or key is None else Secret(str(key)),
            ini_path=ini_path,
            schemas_dir=_ini_relative_path(schemas, schemas_from, ini_path),
            config_ttl=_ttl(ttl, ttl_from),
            ini=sections,
            log_file=_ini_relative_path(log_path, log_path_from, ini_path),
            log_level=_level(level, level_from),
            log_bodies=_flag("AICM_LOG_BODIES", bodies, bodies_from),
        )

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "[secure]"
        return (
            f"Settings(api_base={self.api_base!r}, api_key={key}, ini_path={str(self.ini_path)!r},"
            f" schemas_dir={None if self.schemas_dir is None else str(self.schemas_dir)!r},"
            f" config_ttl={self.config_ttl}, log_level={self.log_level!r},"
            f" log_bodies={self.log_bodies})"
        )


def read_ini(path: Path) -> dict[str, dict[str, str]]:
    """Every section of the INI file (option names lower-cased); {} when there is none."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"cannot read settings file {str(path)!r}: {exc}") from exc
    return {name: dict(parser.items(name)) for name in parser.sections()}


def _invalid(name: str, value: object, source: str, why: str) -> ConfigError:
    return ConfigError(f"setting {name} has value {value!r} (from {source}). {why}")


def _api_base(value: object, source: str) -> str:
    if value is None:
        return DEFAULT_API_BASE
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid("AICM_API_BASE", value, source, "Expected an http:// or https:// URL.")
    if parts.query or parts.fragment:
        raise _invalid("AICM_API_BASE", value, source, "A base URL takes no query or fragment.")
    return text


def _ini_relative_path(value: object, source: str, ini_path: Path) -> Path | None:
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    if source == str(ini_path) and not path.is_absolute():
        path = ini_path.parent / path
    return path


def _ttl(value: object, source: str) -> float:
    if value is None:
        return DEFAULT_CONFIG_TTL
    try:
        ttl = float(str(value))
    except ValueError:
        raise _invalid("AICM_CONFIG_TTL", value, source, "Not a number of seconds.") from None
    if not ttl >= 0:
        raise _invalid("AICM_CONFIG_TTL", value, source, "Must be zero or more seconds.")
    return ttl


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def _level(value: object, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return logging.getLevelName(value) if logging.getLevelName(value) in _LEVELS else None
    text = str(value).strip().upper()
    if text not in _LEVELS:
        raise _invalid("AICM_LOG_LEVEL", value, source, f"Expected one of {', '.join(_LEVELS)}.")
    return text


def _flag(name: str, value: object, source: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise _invalid(name, value, source, "Expected true or false.")
