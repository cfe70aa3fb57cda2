"""Baselines: the raw database doing the least possible work for the same rows as a figure.

Measured on the same machine, in the same run, on the same database as the figure, right
after it, against the store's events table (``stored_events`` on SQLite, keyed by rowid;
``ledgerapp_events`` with its notification_id on PostgreSQL) and its snapshots table:

- writing: the rows the figure wrote, as real rows sampled evenly from what it wrote (cycled
  up to the same count, so sizes match), inserted into a fresh plain table with no index or
  key, in one transaction, committed.  PostgreSQL: ``COPY`` (the baseline) and
  ``executemany`` (also recorded); SQLite: ``executemany``.
- reading: a plain ``SELECT`` of the same rows, every row fetched: the whole log in pages of
  10,000 by position (projections, audit verify), or the aggregates a job loads, as a replay
  needs them: the latest snapshot, if any, and the events after it (interest, sweep: their
  accounts, read just before the interest run and just after the sweep; as-of, per query:
  the account as at the instant, then every event of the platform and the lending pools).
- projections also insert one row per event (position, aggregate, topic) into a plain table,
  in the same transaction, the way the writing baseline inserts.

A figure's baseline rate is its count (commands, accounts, events, queries) over the
baseline's seconds; the ratio is the figure's rate over that, so 0.12 means the ledger runs
at 12 % of the raw database's speed for the same rows.
"""
from __future__ import annotations

import sqlite3
import time
from itertools import cycle, islice
from typing import Any, Callable, Iterable, Iterator, Sequence

from ledger.adapters.store import persistence_env

SAMPLE = 20_000  # real rows kept to stand for what a figure wrote
PAGE = 10_000
KEYS_PER_SELECT = 500
COLUMNS = "originator_id, originator_version, topic, state"


class RawDB:
    def __init__(self, url: str, events_table: str, snapshots_table: str) -> None:
        env = persistence_env(url)
        self.postgres = "POSTGRES_DBNAME" in env
        self.table, self.snapshots = events_table, snapshots_table
        if self.postgres:
            import psycopg

            self.conn: Any = psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                                             password=env["POSTGRES_PASSWORD"], dbname=env["POSTGRES_DBNAME"], autocommit=True)
            self.conn.execute("SET jit = off")  # fresh tables have no statistics: JIT would compile every statement
            self.position, self.blob = "notification_id", "BYTEA"
        else:
            self.conn = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
            self.position, self.blob = "rowid", "BLOB"

    @classmethod
    def of(cls, app: Any, url: str) -> "RawDB":
        """The raw database under a LedgerApp's store, with the app's table names."""
        return cls(url, app.recorder.events_table_name, app.snapshots.recorder.events_table_name)

    def close(self) -> None:
        self.conn.close()

    def q(self, statement: str) -> str:
        return statement.replace("%", "%%").replace("?", "%s") if self.postgres else statement

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(self.q(statement), params).fetchall())

    def head(self) -> int:
        return int(self.rows(f"SELECT COALESCE(MAX({self.position}), 0) FROM {self.table}")[0][0])

    # --- writing --------------------------------------------------------------------------
    def sample(self, after: int, upto: int) -> list[tuple[Any, ...]]:
        """Up to SAMPLE of the rows at positions after < p <= upto, spread evenly."""
        step = max(1, (upto - after) // SAMPLE)
        return self.rows(f"SELECT {COLUMNS} FROM {self.table} WHERE {self.position} > ? AND {self.position} <= ? "
                         f"AND {self.position} % ? = 0", [after, upto, step])

    def write(self, after: int, upto: int) -> dict[str, Any]:
        """Seconds to write as many rows as positions after..upto hold, like them: one transaction."""
        count = upto - after
        rows = list(islice(cycle(self.sample(after, upto)), count))
        seconds = {"executemany": self._insert(rows, copy=False)}
        if self.postgres:
            seconds["copy"] = self._insert(rows, copy=True)
        method = "copy" if self.postgres else "executemany"
        return {"rows_written": count, "method": method, "seconds": seconds[method],
                "insert_seconds": seconds}

    def _insert(self, rows: list[tuple[Any, ...]], copy: bool) -> float:
        self.create("raw_events", COLUMNS)
        started = time.perf_counter()
        with self.transaction():
            self.insert("raw_events", COLUMNS, rows, copy)
        seconds = time.perf_counter() - started
        self.conn.execute("DROP TABLE raw_events")
        return seconds

    def commit_each(self, count: int) -> list[float]:  # float-ok: seconds
        """Seconds to insert and commit one real row, ``count`` times, ascending."""
        [row] = self.sample(0, self.head())[:1] or [("raw", 1, "raw", b"")]
        self.create("raw_events", COLUMNS)
        took = []
        for _ in range(count):
            started = time.perf_counter()
            with self.transaction():
                self.insert("raw_events", COLUMNS, [row], copy=False)
            took.append(time.perf_counter() - started)
        self.conn.execute("DROP TABLE raw_events")
        return sorted(took)

    def create(self, table: str, columns: str) -> None:
        """A fresh plain table: no key, no index."""
        types = {"originator_id": "TEXT", "originator_version": "BIGINT", "topic": "TEXT", "state": self.blob,
                 "position": "BIGINT"}
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {types[c]}' for c in columns.split(', '))})")

    def transaction(self) -> Any:
        return self.conn.transaction() if self.postgres else _SQLiteTransaction(self.conn)

    def insert(self, table: str, columns: str, rows: Iterable[tuple[Any, ...]], copy: bool) -> None:
        if copy:
            with self.conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as out:
                for row in rows:
                    out.write_row(row)
            return
        marks = ", ".join("?" for _ in columns.split(", "))
        cursor = self.conn.cursor()
        cursor.executemany(self.q(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), rows)

    # --- reading --------------------------------------------------------------------------
    def pages(self, upto: int) -> Iterator[list[tuple[Any, ...]]]:
        """Positions 1..upto, PAGE positions a statement.  A range, not LIMIT: without
        statistics on a fresh table, PostgreSQL would sort the rest of the log for each page."""
        for after in range(0, upto, PAGE):
            yield self.rows(f"SELECT {self.position}, {COLUMNS} FROM {self.table} WHERE {self.position} > ? "
                            f"AND {self.position} <= ? ORDER BY {self.position}", [after, min(after + PAGE, upto)])

    def read_log(self, upto: int) -> dict[str, Any]:
        """Seconds to read positions 1..upto, every row fetched."""
        started = time.perf_counter()
        count = sum(len(page) for page in self.pages(upto))
        return {"rows_read": count, "method": "select", "seconds": time.perf_counter() - started}

    def read_log_and_insert(self, upto: int) -> dict[str, Any]:
        """Seconds to read positions 1..upto and insert one row per event, in one transaction."""
        columns, copy = "position, originator_id, topic", self.postgres
        self.create("raw_view", columns)
        started, count = time.perf_counter(), 0
        with self.transaction():
            for page in self.pages(upto):
                self.insert("raw_view", columns, ((p, o, t) for p, o, _, t, _ in page), copy)
                count += len(page)
        seconds = time.perf_counter() - started
        self.conn.execute("DROP TABLE raw_view")
        return {"rows_read": count, "rows_written": count, "method": "select + " + ("copy" if copy else "executemany"),
                "seconds": seconds}

    def read_keys(self, keys: Sequence[str]) -> dict[str, Any]:
        """Seconds to read every event of these aggregates."""
        return self._read_chunks(keys, lambda where: f"SELECT {COLUMNS} FROM {self.table} WHERE {where}")

    def read_states(self, keys: Sequence[str]) -> dict[str, Any]:
        """Seconds to read these aggregates as a replay needs them: each one's latest
        snapshot, if any, and its events after it."""
        latest = (f"(SELECT MAX(s.originator_version) FROM {self.snapshots} s "
                  "WHERE s.originator_id = {alias}.originator_id)")
        snapshots = self._read_chunks(keys, lambda where: f"SELECT {COLUMNS} FROM {self.snapshots} t WHERE {where} "
                                                          f"AND originator_version = {latest.format(alias='t')}")
        events = self._read_chunks(keys, lambda where: f"SELECT {COLUMNS} FROM {self.table} t WHERE {where} "
                                                       f"AND originator_version > COALESCE({latest.format(alias='t')}, 0)")
        return {"rows_read": snapshots["rows_read"] + events["rows_read"], "method": "select",
                "seconds": snapshots["seconds"] + events["seconds"]}

    def _read_chunks(self, keys: Sequence[str], statement: Callable[[str], str]) -> dict[str, Any]:
        """Run ``statement(where)`` for KEYS_PER_SELECT aggregates at a time, every row fetched."""
        started, count = time.perf_counter(), 0
        for first in range(0, len(keys), KEYS_PER_SELECT):
            chunk = list(keys[first:first + KEYS_PER_SELECT])
            if self.postgres:
                where, params = "originator_id = ANY(?)", [chunk]
            else:
                where, params = f"originator_id IN ({', '.join('?' for _ in chunk)})", chunk
            count += len(self.rows(statement(where), params))
        return {"rows_read": count, "method": "select", "seconds": time.perf_counter() - started}

    def read_at(self, key: str, version: int) -> dict[str, Any]:
        """Seconds to read one aggregate as at ``version``: its latest snapshot up to there,
        if any, then its events after the snapshot up to there."""
        started = time.perf_counter()
        snapshot = self.rows(f"SELECT {COLUMNS} FROM {self.snapshots} WHERE originator_id = ? AND originator_version <= ? "
                             "ORDER BY originator_version DESC LIMIT 1", [key, version])
        after = snapshot[0][1] if snapshot else 0
        events = self.rows(f"SELECT {COLUMNS} FROM {self.table} WHERE originator_id = ? AND originator_version > ? "
                           "AND originator_version <= ? ORDER BY originator_version", [key, after, version])
        return {"rows_read": len(snapshot) + len(events), "method": "select", "seconds": time.perf_counter() - started}


class _SQLiteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN")

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if kind else "COMMIT")


def combine(*parts: dict[str, Any]) -> dict[str, Any]:
    """One baseline made of several, one after the other (reads, then writes)."""
    return {"method": " + ".join(p["method"] for p in parts), "seconds": sum(p["seconds"] for p in parts),
            "parts": list(parts)}
