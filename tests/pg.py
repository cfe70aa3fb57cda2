"""The PostgreSQL test server: one database per test run, one schema per test.

Locally, without a server, PostgreSQL tests skip with the reason.  With
``LEDGER_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) a missing server fails them instead.
"""
from __future__ import annotations

import os
import uuid

import pytest

HOST = os.environ.get("LEDGER_TEST_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("LEDGER_TEST_PG_PORT", "5432"))
USER = os.environ.get("LEDGER_TEST_PG_USER", "postgres")
REQUIRED = os.environ.get("LEDGER_REQUIRE_POSTGRES") == "1"
RUN_DB = f"ledger_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_state: dict[str, object] = {}


def _connect(dbname: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname=dbname, autocommit=True, connect_timeout=3)


def require_server() -> None:
    """Skip (locally) or fail (CI) when no server answers; create the run's database once."""
    if "error" in _state:
        _unavailable(str(_state["error"]))
    if "ready" in _state:
        return
    try:
        with _connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{RUN_DB}"')
    except Exception as error:  # noqa: BLE001 - any failure to reach the server
        _state["error"] = f"PostgreSQL at {HOST}:{PORT} is not available ({str(error).strip().splitlines()[0]})"
        _unavailable(str(_state["error"]))
    _state["ready"] = True


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason + "; LEDGER_REQUIRE_POSTGRES=1 requires it", pytrace=False)
    pytest.skip(reason)


def new_schema() -> str:
    require_server()
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with _connect(RUN_DB) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema


def url(schema: str | None = None) -> str:
    return f"postgresql://{USER}@{HOST}:{PORT}/{RUN_DB}"


def env(schema: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "stores.postgres",
        "POSTGRES_DBNAME": RUN_DB,
        "POSTGRES_HOST": HOST,
        "POSTGRES_PORT": str(PORT),
        "POSTGRES_USER": USER,
        "POSTGRES_PASSWORD": "",
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "2",
    }


def drop_run_database() -> None:
    if "ready" not in _state:
        return
    with _connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')


def new_database() -> str:
    """A fresh database (for tests that drive the CLI, whose URL names no schema)."""
    require_server()
    name = f"{RUN_DB}_{uuid.uuid4().hex[:6]}"
    with _connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _state.setdefault("extra", []).append(name)  # type: ignore[union-attr]
    return f"postgresql://{USER}@{HOST}:{PORT}/{name}"


def drop_extra_databases() -> None:
    extra = _state.get("extra") or []
    if not extra:
        return
    with _connect("postgres") as conn:
        for name in extra:  # type: ignore[union-attr]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
