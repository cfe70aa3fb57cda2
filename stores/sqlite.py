"""eventsourcing's SQLite store with ``select_many`` (see ``stores``).

Every wait is bounded: a writer waits at most ``SQLITE_LOCK_TIMEOUT`` seconds (sqlite3's busy
timeout; default 30 here, ``LEDGER_SQLITE_LOCK_TIMEOUT``) for the file's write lock, then
``OperationalError: database is locked``; a thread waits at most eventsourcing's pool timeout
(5 s) for a connection.  Statements run in-process: nothing waits on a server.
"""
from __future__ import annotations

from typing import Any, Sequence

from eventsourcing import sqlite as base  # a module, not its classes: eventsourcing expects one factory class here
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import Environment

from stores import WithOrjson, chunks, group

LOCK_TIMEOUT = 30  # seconds, when SQLITE_LOCK_TIMEOUT is not set

SELECT_MANY = """
WITH ids(id) AS (VALUES {values}),
snap AS (SELECT id, (SELECT MAX(originator_version) FROM {snapshots} WHERE originator_id = ids.id) AS version
         FROM ids)
SELECT originator_id, originator_version, topic, state FROM (
  SELECT s.originator_id, s.originator_version, s.topic, s.state, 0 AS part
    FROM snap JOIN {snapshots} s ON s.originator_id = snap.id AND s.originator_version = snap.version
  UNION ALL
  SELECT e.originator_id, e.originator_version, e.topic, e.state, 1 AS part
    FROM snap JOIN {events} e ON e.originator_id = snap.id AND e.originator_version > COALESCE(snap.version, 0)
) ORDER BY originator_id, part, originator_version
"""
SELECT_AFTER = """
WITH known(id, version) AS (VALUES {values})
SELECT e.originator_id, e.originator_version, e.topic, e.state
FROM known JOIN {events} e ON e.originator_id = known.id AND e.originator_version > known.version
ORDER BY e.originator_id, e.originator_version
"""


class Recorder(base.SQLiteApplicationRecorder):
    snapshots_table_name = "stored_snapshots"  # as SQLiteFactory.aggregate_recorder("snapshots")
    inserts_snapshots = True  # LedgerApp.save passes them with the events: one transaction

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """The events in one ``executemany`` (the library inserts them one statement at a
        time) and the snapshots passed along, in the caller's transaction.  The write lock
        is held, so the new rows' notification ids are the last ``len(stored_events)``."""
        c.executemany(f"INSERT INTO {self.events_table_name} (originator_id, originator_version, topic, state) "
                      "VALUES (?,?,?,?)", [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored_events])
        snapshots = kwargs.get("snapshots") or []
        if snapshots:
            c.executemany(f"INSERT INTO {self.snapshots_table_name} VALUES (?,?,?,?)",
                          [(e.originator_id, e.originator_version, e.topic, e.state) for e in snapshots])
        if not stored_events:
            return []
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
        last = c.fetchone()[0]
        return list(range(last - len(stored_events) + 1, last + 1))

    def select_many(self, ids: list[str]) -> dict[str, list[StoredEvent]]:
        """For each id with events: its latest snapshot, if any, then the events after it."""
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.transaction(commit=False) as curs:
            for chunk in chunks(ids):
                statement = SELECT_MANY.format(values=",".join(["(?)"] * len(chunk)),
                                               events=self.events_table_name, snapshots=self.snapshots_table_name)
                curs.execute(statement, chunk)
                found.update(group(tuple(row) for row in curs.fetchall()))
        return found

    def snapshot_ids(self) -> set[str]:
        """The ids that have at least one snapshot."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT DISTINCT originator_id FROM {self.snapshots_table_name}")
            return {row[0] for row in curs.fetchall()}

    def select_after(self, versions: dict[str, int]) -> dict[str, list[StoredEvent]]:
        """For each id: the events after the given version (ids with none are left out)."""
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.transaction(commit=False) as curs:
            for chunk in chunks(list(versions)):
                statement = SELECT_AFTER.format(values=",".join(["(?,?)"] * len(chunk)), events=self.events_table_name)
                curs.execute(statement, [value for i in chunk for value in (i, versions[i])])
                found.update(group(tuple(row) for row in curs.fetchall()))
        return found


class Factory(WithOrjson, base.SQLiteFactory):
    application_recorder_class = Recorder

    def __init__(self, env: Any) -> None:
        env = Environment(env.name, dict(env)) if isinstance(env, Environment) else Environment(env=env)
        raw = (env.get(self.SQLITE_LOCK_TIMEOUT) or "").strip()
        if raw and not (raw.isdigit() and int(raw) > 0):
            raise OSError(f"{self.SQLITE_LOCK_TIMEOUT} (bound on waiting for the write lock) must be a whole number "
                          f"of seconds above 0, not {raw!r}: nothing may wait without bound")
        env[self.SQLITE_LOCK_TIMEOUT] = raw or str(LOCK_TIMEOUT)
        super().__init__(env)
