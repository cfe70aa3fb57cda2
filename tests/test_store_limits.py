"""The guide: no lock, statement or connection waits without bound (README "Store limits").

Every ledger PostgreSQL connection carries the bounds; a lock or statement over its bound,
a session idle in its transaction and a full pool end in an exception at once (for the
application to retry or report), never a wait; a bound that is not a positive whole number
of seconds refuses to open the store.  SQLite: the write lock's wait is bounded too.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import InternalError, OperationalError, StoredEvent
from typer.testing import CliRunner

from entrypoints.cli import cli
from ledger.service.app import LedgerApp
from ledger.adapters.store import persistence_env
from projections.sql import ViewDatabase
from tests import pg

EVENT = [StoredEvent("account/x", 1, "t", b"{}")]


def open_pg(**settings: str) -> LedgerApp:
    return LedgerApp(env={**pg.env(pg.new_schema()), **settings})


def held_lock(app: LedgerApp, seconds: float) -> threading.Timer:
    """Another writer holds the events table's lock for ``seconds``."""
    holder = pg._connect(pg.RUN_DB)
    holder.execute("BEGIN")
    holder.execute(f"LOCK TABLE {app.recorder.datastore.schema}.ledgerapp_events IN EXCLUSIVE MODE")
    timer = threading.Timer(seconds, lambda: (holder.execute("COMMIT"), holder.close()))
    timer.start()
    return timer


def raised_within(seconds: float, work: Any, kind: type[BaseException] = OperationalError) -> BaseException:
    started = time.monotonic()
    with pytest.raises(kind) as caught:
        work()
    assert time.monotonic() - started < seconds, "the error came late"
    return caught.value


@pytest.mark.postgres
def test_every_ledger_connection_carries_the_bounds() -> None:
    app = open_pg()
    db = ViewDatabase(pg.env(app.recorder.datastore.schema))
    try:
        with app.recorder.datastore.get_connection() as conn:
            store = {name: conn.execute(f"SHOW {name}").fetchone()[name] for name in
                     ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout", "jit")}
            params = conn.info.get_parameters()
        views = {name: db.rows(f"SHOW {name}")[0][0] for name in store}
        assert store == views == {"lock_timeout": "10s", "statement_timeout": "1min",
                                  "idle_in_transaction_session_timeout": "5s", "jit": "off"}
        assert {k: params.get(k) for k in ("keepalives", "keepalives_idle", "tcp_user_timeout", "connect_timeout")} == \
            {"keepalives": "1", "keepalives_idle": "10", "tcp_user_timeout": "30000", "connect_timeout": "5"}
        assert app.recorder.datastore.pool.timeout == 5 and app.recorder.datastore.lock_timeout == 10
    finally:
        db.close()
        app.close()


@pytest.mark.postgres
def test_the_ledger_pg_variables_set_the_bounds() -> None:
    environ = {"LEDGER_PG_LOCK_TIMEOUT": "3", "LEDGER_PG_STATEMENT_TIMEOUT": "7", "LEDGER_PG_POOL_TIMEOUT": "2",
               "LEDGER_PG_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "4", "LEDGER_PG_TCP_USER_TIMEOUT": "9"}
    env = persistence_env(pg.url(), environ=environ)
    assert {k: env[k] for k in ("POSTGRES_LOCK_TIMEOUT", "POSTGRES_STATEMENT_TIMEOUT", "POSTGRES_POOL_TIMEOUT")} == \
        {"POSTGRES_LOCK_TIMEOUT": "3", "POSTGRES_STATEMENT_TIMEOUT": "7", "POSTGRES_POOL_TIMEOUT": "2"}
    app = LedgerApp(env={**env, "POSTGRES_SCHEMA": pg.new_schema()})
    try:
        with app.recorder.datastore.get_connection() as conn:
            shown = [conn.execute(f"SHOW {n}").fetchone()[n] for n in
                     ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout")]
            assert (shown, conn.info.get_parameters()["tcp_user_timeout"]) == (["3s", "7s", "4s"], "9000")
        assert app.recorder.datastore.pool.timeout == 2
    finally:
        app.close()


@pytest.mark.postgres
def test_a_lock_held_beyond_its_bound_raises_promptly_and_writes_nothing() -> None:
    app = open_pg(POSTGRES_LOCK_TIMEOUT="1")
    timer = held_lock(app, 3)  # without the bound the save would wait the 3 s, then succeed
    try:
        error = raised_within(2.5, lambda: app.recorder.insert_events(EVENT))
        assert isinstance(error.__cause__, psycopg.errors.LockNotAvailable), repr(error.__cause__)
    finally:
        timer.join()
    assert app.recorder.max_notification_id() is None
    assert app.recorder.insert_events(EVENT) == [1]  # the lock is free again: the same save goes in
    app.close()


@pytest.mark.postgres
def test_a_statement_beyond_its_bound_is_cancelled() -> None:
    app = open_pg(POSTGRES_STATEMENT_TIMEOUT="1")
    try:
        def slow() -> None:
            with app.recorder.datastore.get_connection() as conn:
                conn.execute("SELECT pg_sleep(5)")
        error = raised_within(4, slow)
        assert isinstance(error.__cause__, psycopg.errors.QueryCanceled), repr(error.__cause__)
    finally:
        app.close()


@pytest.mark.postgres
def test_a_session_idle_in_its_transaction_is_ended_by_the_server() -> None:
    app = open_pg(POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="1")
    try:
        def idle() -> None:
            with app.recorder.datastore.get_connection() as conn, conn.transaction():
                conn.execute("SELECT 1")
                time.sleep(2.5)  # a client that stopped talking inside its transaction
                conn.execute("SELECT 1")
        error = raised_within(6, idle, InternalError)  # SQLSTATE class 25: psycopg says InternalError
        assert isinstance(error.__cause__, psycopg.errors.IdleInTransactionSessionTimeout), repr(error.__cause__)
    finally:
        app.close()


@pytest.mark.postgres
def test_waiting_for_a_connection_of_a_full_pool_is_bounded() -> None:
    app = open_pg(POSTGRES_POOL_TIMEOUT="1", POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="0")
    try:
        def second() -> None:
            with app.recorder.datastore.get_connection():
                pass
        with app.recorder.datastore.get_connection():
            error = raised_within(4, second)
        assert isinstance(error.__cause__, psycopg.OperationalError), repr(error.__cause__)  # PoolTimeout
    finally:
        app.close()


@pytest.mark.parametrize("name,value", [("LEDGER_PG_LOCK_TIMEOUT", "0"), ("LEDGER_PG_STATEMENT_TIMEOUT", "soon"),
                                        ("LEDGER_SQLITE_LOCK_TIMEOUT", "-1")])
def test_a_bound_that_is_not_a_positive_number_of_seconds_refuses_to_open(tmp_path, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    url = pg.new_database() if "_PG_" in name else f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["--db", url, "apply", "-"], input="", env={name: value})  # a writer: it may create the store
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()  # one line, no traceback
    assert name.replace("LEDGER_PG_", "POSTGRES_").replace("LEDGER_", "") in line and "whole number of seconds" in line


def test_sqlite_a_write_lock_held_beyond_its_bound_raises_promptly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "l.db"
    app = LedgerApp(env={**persistence_env(f"sqlite:///{path}"), "SQLITE_LOCK_TIMEOUT": "1"})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        raised_within(4, lambda: app.recorder.insert_events(EVENT))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert app.recorder.insert_events(EVENT) == [1]
    app.close()
