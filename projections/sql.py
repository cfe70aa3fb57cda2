"""A small SQL adapter for the read models: the same statements on SQLite and PostgreSQL.

Statements use ``?`` placeholders and ``{money}`` for a money column's type; PostgreSQL gets
``%s`` and ``NUMERIC`` (exact), SQLite gets ``TEXT`` (SQLite's NUMERIC would turn "1.5" into a
float), and sums of money are done in Python with ``Decimal`` there.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Iterator, Sequence


class ViewDatabase:
    def __init__(self, env: dict[str, str]) -> None:
        self.postgres = env["PERSISTENCE_MODULE"].endswith("postgres")
        if self.postgres:
            import psycopg

            from stores import limits

            self._conn: Any = psycopg.connect(
                host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                password=env.get("POSTGRES_PASSWORD", ""), dbname=env["POSTGRES_DBNAME"], autocommit=True,
                **limits.connection_kwargs(limits.read(env), limits.read_only(env)),  # the store's bounds
            )
            if env.get("POSTGRES_SCHEMA"):
                self._conn.execute(f"SET search_path TO {env['POSTGRES_SCHEMA']}")
        else:
            # the worker's projection job uses it from the scheduler's thread, one run at a time
            # uri: a read-only opening names the file as file:PATH?mode=ro (ledger.adapters.store)
            self._conn = sqlite3.connect(env["SQLITE_DBNAME"], timeout=30, isolation_level=None,
                                         check_same_thread=False, uri=True)

    def sql(self, statement: str) -> str:
        statement = statement.replace("{money}", "NUMERIC" if self.postgres else "TEXT")
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def transaction(self) -> Iterator["ViewDatabase"]:
        """One transaction: the view rows and the tracking position commit together."""
        if self.postgres:
            with self._conn.transaction():
                yield self
        else:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator["ViewDatabase"]:
        """Reads that see one state of the database, without taking a write lock (so on a
        read-only connection too)."""
        if self.postgres:
            with self._conn.transaction():
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield self
        else:
            self._conn.execute("BEGIN")  # deferred: a read snapshot from the first read on (WAL)
            try:
                yield self
            finally:
                self._conn.execute("ROLLBACK")

    def execute(self, statement: str, params: Sequence[Any] = ()) -> int:
        cursor = self._conn.execute(self.sql(statement), [self._param(p) for p in params])
        return cursor.rowcount

    def executemany(self, statement: str, rows: list[Sequence[Any]]) -> None:
        if rows:
            params = [[self._param(p) for p in row] for row in rows]
            if self.postgres:
                with self._conn.cursor() as cursor:
                    cursor.executemany(self.sql(statement), params)
            else:
                self._conn.executemany(self.sql(statement), params)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(self.sql(statement), [self._param(p) for p in params])
        return cursor.fetchall()  # tuples, as both drivers return them

    def _param(self, value: Any) -> Any:
        if isinstance(value, Decimal) and not self.postgres:
            return format(value, "f")
        return value

    def table_exists_sql(self) -> str:
        if self.postgres:
            return "SELECT 1 FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()"
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def close(self) -> None:
        self._conn.close()
