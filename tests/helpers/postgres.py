"""PostgreSQL for the catalog tests: the server named by $COMPRESSGATE_TEST_PG_URL (tests that
need it skip without it), one fresh schema per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ENV = "COMPRESSGATE_TEST_PG_URL"


def postgres_url(schema: str) -> str:
    """$COMPRESSGATE_TEST_PG_URL with its search_path set to `schema` (skips without it)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"${PG_ENV} is not set: no PostgreSQL server to test against")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(schema: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema for one test, dropped afterwards; yields its URL."""
    import sqlalchemy as sa

    url = postgres_url(schema)
    engine = sa.create_engine(os.environ[PG_ENV])
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()
