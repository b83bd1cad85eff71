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
class Found:
    """A setting's raw value and where it came from, worded for error messages."""

    value: object
    where: str  # "argument aicm_api_base", "environment variable AICM_API_BASE", ...
    ini_path: Path | None = None  # set when the value came from the INI file

    def invalid(self, why: str) -> ConfigError:
        return ConfigError(f"setting {self.where} has value {self.value!r}. {why}")

    def path(self) -> Path:
        """The value as a path; relative paths in the INI file are relative to its folder."""
        path = Path(os.fspath(self.value)).expanduser()  # type: ignore[call-overload]
        if self.ini_path is not None and not path.is_absolute():
            path = self.ini_path.parent / path
        return path


@dataclass(frozen=True)
class Sources:
    """The one resolver every setting goes through: explicit argument > environment
    variable > AICM.INI > default (``pick`` answers None for the default)."""

    environ: Mapping[str, str]
    ini_path: Path
    ini: Mapping[str, Mapping[str, str]]

    @classmethod
    def load(
        cls, ini_path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None
    ) -> Sources:
        env = os.environ if environ is None else environ
        path = Path(ini_path or env.get("AICM_INI_PATH") or DEFAULT_INI_PATH).expanduser()
        return cls(env, path, read_ini(path))

    def pick(
        self, explicit: object, argument: str, variable: str, section: str, option: str
    ) -> Found | None:
        if explicit is not None:
            return Found(explicit, f"argument {argument}")
        if self.environ.get(variable):
            return Found(self.environ[variable], f"environment variable {variable}")
        value = self.ini.get(section, {}).get(option)
        if value:
            return Found(value, f"{option} in [{section}] of {str(self.ini_path)!r}", self.ini_path)
        return None


@dataclass(frozen=True)
class Settings:
    api_base: str = DEFAULT_API_BASE
    api_key: Secret | None = None
    ini_path: Path = Path(DEFAULT_INI_PATH)
    schemas_dir: Path | None = None
    config_ttl: float = DEFAULT_CONFIG_TTL
    sources: Sources | None = None  # what later layers (delivery settings) resolve from
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
        sources = Sources.load(aicm_ini_path, environ)

        def pick(explicit: object, argument: str, variable: str) -> Found | None:
            return sources.pick(explicit, argument, variable, INI_SECTION, variable.lower())

        schemas = pick(schemas_dir, "schemas_dir", "AICM_SCHEMAS_DIR")
        log_path = pick(log_file, "log_file", "AICM_LOG_FILE")
        return cls(
            api_base=_api_base(pick(aicm_api_base, "aicm_api_base", "AICM_API_BASE")),
            api_key=_api_key(pick(aicm_api_key, "aicm_api_key", "AICM_API_KEY")),
            ini_path=sources.ini_path,
            schemas_dir=None if schemas is None else schemas.path(),
            config_ttl=_ttl(pick(config_ttl, "config_ttl", "AICM_CONFIG_TTL")),
            sources=sources,
            log_file=None if log_path is None else log_path.path(),
            log_level=_level(pick(log_level, "log_level", "AICM_LOG_LEVEL")),
            log_bodies=_flag(pick(log_bodies, "log_bodies", "AICM_LOG_BODIES")),
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


def _api_base(found: Found | None) -> str:
    if found is None:
        return DEFAULT_API_BASE
    text = str(found.value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise found.invalid("Expected an http:// or https:// URL.")
    if parts.query or parts.fragment:
        raise found.invalid("A base URL takes no query or fragment.")
    return text


def _api_key(found: Found | None) -> Secret | None:
    """The key, checked so that it can travel in an Authorization header. Errors name the
    setting and never the key."""
    if found is None:
        return None
    if isinstance(found.value, Secret):
        # A Secret made elsewhere is checked too: every path a key takes ends in a header.
        problem = header_problem(found.value.reveal())
        if problem:
            raise ConfigError(f"setting {found.where}: the API key {problem}.")
        return found.value
    text = str(found.value).strip()
    if not text:
        raise ConfigError(f"setting {found.where} is blank. Expected an API key.")
    problem = header_problem(text)
    if problem:
        raise ConfigError(f"setting {found.where}: the API key {problem}.")
    return Secret(text)


def header_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent as an HTTP header value, or None. Never quotes it."""
    if not text.isprintable():
        return "contains a line break or another control character"
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return "contains characters an HTTP header cannot carry (only Latin-1 is allowed)"
    return None


def _ttl(found: Found | None) -> float:
    if found is None:
        return DEFAULT_CONFIG_TTL
    try:
        ttl = float(str(found.value))
    except ValueError:
        raise found.invalid("Not a number of seconds.") from None
    if not ttl >= 0:
        raise found.invalid("Must be zero or more seconds.")
    return ttl


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def _level(found: Found | None) -> str | None:
    if found is None:
        return None
    value = found.value
    if isinstance(value, int) and not isinstance(value, bool):
        return logging.getLevelName(value) if logging.getLevelName(value) in _LEVELS else None
    text = str(value).strip().upper()
    if text not in _LEVELS:
        raise found.invalid(f"Expected one of {', '.join(_LEVELS)}.")
    return text


def _flag(found: Found | None) -> bool:
    if found is None:
        return False
    if isinstance(found.value, bool):
        return found.value
    text = str(found.value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise found.invalid("Expected true or false.")
