"""eventsourcing's SQLite store with ``select_many`` (see ``stores``), and each event's link in
the audit chain written in the event's own transaction (``stores.chain``).

Every wait is bounded: a writer waits at most ``SQLITE_LOCK_TIMEOUT`` seconds (sqlite3's busy
timeout; default 30 here, ``LEDGER_SQLITE_LOCK_TIMEOUT``) for the file's write lock, then
``OperationalError: database is locked``; a thread waits at most eventsourcing's pool timeout
(5 s) for a connection.  Statements run in-process: nothing waits on a server.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence
from uuid import UUID

from eventsourcing import sqlite as base  # a module, not its classes: eventsourcing expects one factory class here
from eventsourcing.persistence import StoredEvent

from stores import WithOrjson, chain, chunks, group

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


def rows(stored_events: Sequence[StoredEvent]) -> list[tuple[Any, int, str, bytes]]:
    """The rows to insert; a UUID id as hex text, as eventsourcing stores it."""
    return [(e.originator_id.hex if isinstance(e.originator_id, UUID) else e.originator_id,
             e.originator_version, e.topic, e.state) for e in stored_events]


class ImmediateTransaction(base.SQLiteTransaction):
    """eventsourcing's transaction, begun with the write lock taken."""

    def __enter__(self) -> Any:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class Recorder(base.SQLiteApplicationRecorder):
    snapshots_table_name = "stored_snapshots"  # as SQLiteFactory.aggregate_recorder("snapshots")
    inserts_snapshots = True  # LedgerApp.save passes them with the events: one transaction
    links_at_commit = True  # each event's audit link is written in its own transaction (stores.chain)

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + [chain.DDL.format(table=chain.TABLE)]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """The events in one ``executemany`` (the library inserts them one statement at a
        time), their links and the snapshots passed along, in the caller's transaction.  The
        first statement writes, so the write lock is held from there on: the new rows'
        notification ids are the last ``len(stored_events)``, and the chain's head is the
        previous link."""
        c.executemany(f"INSERT INTO {self.events_table_name} (originator_id, originator_version, topic, state) "
                      "VALUES (?,?,?,?)", rows(stored_events))
        snapshots = kwargs.get("snapshots") or []
        if snapshots:
            c.executemany(f"INSERT INTO {self.snapshots_table_name} VALUES (?,?,?,?)", rows(snapshots))
        if not stored_events:
            return []
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")
        last = c.fetchone()[0]
        ids = list(range(last - len(stored_events) + 1, last + 1))
        position, previous = self._head(c)
        c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name} WHERE rowid < ?", [ids[0]])
        if position == (c.fetchone()[0] or 0):  # the chain is whole up to this transaction's events
            self._insert_links(c, chain.extend(previous, (
                (i, e.originator_id, e.originator_version, e.topic, e.state) for i, e in zip(ids, stored_events))))
        return ids

    def link_backlog(self, page: int = chain.BACKLOG_PAGE) -> int:
        """Link every event that has no link yet, in order, ``page`` per transaction with the
        write lock held (``ledger audit seal``, for logs written before the stores linked each
        event); return how many were linked."""
        linked = 0
        while True:
            with self._immediate() as c:
                position, previous = self._head(c)
                c.execute(f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                          "WHERE rowid > ? ORDER BY rowid LIMIT ?", [position, page])
                found = [(i, self.convert_originator_id(a), v, t, bytes(s)) for i, a, v, t, s in c.fetchall()]
                self._insert_links(c, chain.extend(previous, found))
            linked += len(found)
            if len(found) < page:
                return linked

    @contextmanager
    def _immediate(self) -> Iterator[Any]:
        with self.datastore.get_connection(commit=True) as conn, ImmediateTransaction(conn, commit=True) as curs, curs:
            yield curs

    @staticmethod
    def _head(c: Any) -> tuple[int, str]:
        c.execute(f"SELECT position, link FROM {chain.TABLE} ORDER BY position DESC LIMIT 1")
        return chain.head(c.fetchall())

    @staticmethod
    def _insert_links(c: Any, links: list[tuple[int, str]]) -> None:
        c.executemany(f"INSERT INTO {chain.TABLE} (position, link) VALUES (?, ?)", links)


    def _ids(self, ids: Sequence[Any]) -> list[Any]:
        return [i.hex if isinstance(i, UUID) else i for i in ids]

    def _group(self, found: list[Any]) -> dict[Any, list[StoredEvent]]:
        if self.datastore.originator_id_type != "uuid":
            return group(tuple(row) for row in found)
        return group((self.convert_originator_id(a), v, t, s) for a, v, t, s in found)

    def select_many(self, ids: list[str]) -> dict[str, list[StoredEvent]]:
        """For each id with events: its latest snapshot, if any, then the events after it."""
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.transaction(commit=False) as curs:
            for chunk in chunks(ids):
                statement = SELECT_MANY.format(values=",".join(["(?)"] * len(chunk)),
                                               events=self.events_table_name, snapshots=self.snapshots_table_name)
                curs.execute(statement, self._ids(chunk))
                found.update(self._group(curs.fetchall()))
        return found

    def snapshot_ids(self) -> set[str]:
        """The ids that have at least one snapshot."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT DISTINCT originator_id FROM {self.snapshots_table_name}")
            return {self.convert_originator_id(row[0]) for row in curs.fetchall()}

    def select_after(self, versions: dict[str, int]) -> dict[str, list[StoredEvent]]:
        """For each id: the events after the given version (ids with none are left out)."""
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.transaction(commit=False) as curs:
            for chunk in chunks(list(versions)):
                statement = SELECT_AFTER.format(values=",".join(["(?,?)"] * len(chunk)), events=self.events_table_name)
                curs.execute(statement, [value for i, key in zip(chunk, self._ids(chunk)) for value in (key, versions[i])])
                found.update(self._group(curs.fetchall()))
        return found


class Factory(WithOrjson, base.SQLiteFactory):
    application_recorder_class = Recorder

    def __init__(self, env: Any) -> None:
        raw = (env.get(self.SQLITE_LOCK_TIMEOUT) or "").strip()
        if raw and not (raw.isdigit() and int(raw) > 0):
            raise OSError(f"{self.SQLITE_LOCK_TIMEOUT} (bound on waiting for the write lock) must be a whole number "
                          f"of seconds above 0, not {raw!r}: nothing may wait without bound")
        super().__init__(env)
        self.datastore.pool.lock_timeout = int(raw or LOCK_TIMEOUT)
