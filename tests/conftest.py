"""Fixtures: a fresh ledger on each store.  Tests that take ``ledger`` run on SQLite and on
PostgreSQL (see tests/pg.py for when PostgreSQL tests skip or fail)."""
from __future__ import annotations

import pytest

from tests import pg
from tests.helpers import Ledger


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return {"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(tmp_path / "ledger.db")}
    return pg.env(pg.new_schema())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A store URL for tests that drive the command line: a SQLite file, or a fresh database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return pg.new_database()


@pytest.fixture
def ledger(store_env: dict[str, str]):  # type: ignore[no-untyped-def]
    book = Ledger(store_env)
    yield book
    book.close()


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    pg.drop_extra_databases()
    pg.drop_run_database()
