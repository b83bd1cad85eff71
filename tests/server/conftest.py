"""Fixtures of the collector's tests: a database of each backend, a live collector on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from .live import BACKENDS, POSTGRES_URL, Api, collector, pg_url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.fail(f"these tests need PostgreSQL at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh, created schema; dropped with everything in it after the test."""
    import psycopg
    from psycopg import sql

    schema = f"aicm_live_{uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'collector.db'}"


@pytest.fixture
def pg_database(pg_schema: str) -> str:
    return pg_url(pg_schema)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> str:
    """The database URL of each backend in turn."""
    name = "sqlite_database" if request.param == "sqlite" else "pg_database"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def api(database: str) -> Iterator[Api]:
    """A collector on each backend in turn, shipped schemas, one key of tenant-a."""
    with collector(database) as a:
        yield a
