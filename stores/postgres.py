"""eventsourcing's PostgreSQL store with ``select_many`` (see ``stores``), its own insert, and
bounds on every wait (``stores.limits``).

The insert does not use psycopg's pipeline mode, as eventsourcing's does.  In pipeline mode,
``Pipeline.sync()`` sends the queued commands with one ``PQflush()`` after the last of them and
ignores its result, then waits only to read (psycopg ``_pipeline_communicate``; the fix of
psycopg #685 covers leaving the pipeline, not ``sync()``).  When a batch's parameters are
larger than the socket buffers can take at that moment (megabytes: 500 accounts' interest
hours, or 40 price ticks to 1,000 futures holders, or any batch sent while the server waits
for the table lock) the tail of the INSERT stays in libpq's buffer: the server waits for it
(``ClientRead``), the client for a result — for ever, holding the table lock.  A plain
transaction sends each statement to the end before it waits for the answer.

One transaction per save: the events table locked (writers in commit order, as
eventsourcing's), a notification, the events with their notification ids, their links in
the audit chain (``stores.chain``), the snapshots the unit of work took.

Writers' turns (``Recorder.turn``): the table lock orders commits, not the reads before them,
so under steady contention one process's batch can keep losing to another's (read, compute,
and at save find a newer version).  Every attempt holds a shared advisory lock on the
writers' key, on a connection of its own, from its first read to its commit; a writer that
lost twice takes the exclusive one for its next attempts, so it waits for the attempts in
flight, then reads, computes and commits with no other writer on the store: it cannot lose
again.  PostgreSQL grants the lock requests in order, so the shared ones asked later wait
behind it (no writer starves).  The lock wait is bounded by the connection's lock_timeout
(a timeout is a conflict, retried).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import psycopg

from eventsourcing import postgres as base  # a module, not its classes: eventsourcing expects one factory class here
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import strtobool
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from stores import WithOrjson, chain, chunks, group, limits

# Each id is read through the primary key: OFFSET 0 keeps the planner from turning the
# per-id subquery into one hash join over the whole table (it guesses hundreds of events per
# id; most aggregates have a few).
SELECT_MANY = """
WITH snap AS (
  SELECT ids.id, s.originator_version AS version, s.topic, s.state
  FROM unnest(%s::{id_type}[]) AS ids(id)
  LEFT JOIN LATERAL (SELECT originator_version, topic, state FROM {schema}.{snapshots}
                     WHERE originator_id = ids.id ORDER BY originator_version DESC LIMIT 1) s ON true)
SELECT originator_id, originator_version, topic, state FROM (
  SELECT id AS originator_id, version AS originator_version, topic, state, 0 AS part
    FROM snap WHERE version IS NOT NULL
  UNION ALL
  SELECT snap.id, e.originator_version, e.topic, e.state, 1 AS part
    FROM snap CROSS JOIN LATERAL (SELECT originator_version, topic, state FROM {schema}.{events}
                                  WHERE originator_id = snap.id AND originator_version > COALESCE(snap.version, 0)
                                  OFFSET 0) e
) rows ORDER BY originator_id, part, originator_version
"""
SELECT_AFTER = """
SELECT known.id, e.originator_version, e.topic, e.state
FROM unnest(%s::{id_type}[], %s::bigint[]) AS known(id, version)
CROSS JOIN LATERAL (SELECT originator_version, topic, state FROM {schema}.{events}
                    WHERE originator_id = known.id AND originator_version > known.version OFFSET 0) e
ORDER BY known.id, e.originator_version
"""
INSERT_ARRAYS = """
INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])
"""
LOCK = "SET LOCAL lock_timeout = '{seconds}s'; LOCK TABLE {schema}.{events} IN EXCLUSIVE MODE; NOTIFY {channel}"
# the chain's head and the last event before this transaction's (see stores.chain)
HEAD = """
SELECT (SELECT max(notification_id) FROM {schema}.{events}), h.position, h.link
FROM (SELECT 1) one LEFT JOIN (SELECT position, link FROM {chain} ORDER BY position DESC LIMIT 1) h ON true
"""
BACKLOG = """
SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{events}
WHERE notification_id > %s ORDER BY notification_id LIMIT %s
"""
# two comma-separated strings, split by the server: psycopg adapts a list element by element
INSERT_LINKS = ("INSERT INTO {chain} (position, link) "
                "SELECT unnest(string_to_array(%s, ',')::bigint[]), unnest(string_to_array(%s, ','))")


TURNS_KEY = 0x4C45444745525452  # "LEDGERTR": the advisory lock of the writers' turns


def arrays(stored_events: Sequence[StoredEvent]) -> list[list[Any]]:
    """The rows as four arrays of plain values: eventsourcing sends an array of a composite
    type, which psycopg builds as text in Python (a third of a batch's save time)."""
    return [[e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events]]


def insert_statement(recorder: Any, table: str, returning: bool = False) -> Composed:
    return SQL(INSERT_ARRAYS + (" RETURNING notification_id" if returning else "")).format(
        schema=Identifier(recorder.datastore.schema), table=Identifier(table),
        id_type=SQL(recorder.datastore.originator_id_type))


class SnapshotRecorder(base.PostgresAggregateRecorder):
    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        curs.execute(insert_statement(self, self.events_table_name), arrays(stored_events))


class Recorder(base.PostgresApplicationRecorder):
    snapshots_table_name = "stored_snapshots"
    inserts_snapshots = True  # LedgerApp.save passes them with the events: one transaction
    links_at_commit = True  # each event's audit link is written in its own transaction (stores.chain)

    def __init__(self, datastore: base.PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        names = {"schema": Identifier(datastore.schema), "events": Identifier(events_table_name),
                 "chain": Identifier(datastore.schema, chain.TABLE), "channel": Identifier(self.channel_name),
                 "id_type": SQL(datastore.originator_id_type), "seconds": SQL(str(int(datastore.lock_timeout)))}
        self.statements = {name: SQL(text).format(**names) for name, text in
                           [("lock", LOCK), ("head", HEAD), ("backlog", BACKLOG), ("links", INSERT_LINKS)]}
        self.insert_returning = insert_statement(self, events_table_name, returning=True)
        self.sql_create_statements.append(SQL(chain.DDL).format(table=names["chain"]))
        self._turns: Optional[psycopg.Connection[Any]] = None
        self._turns_lock = threading.Lock()

    @contextmanager
    def turn(self, exclusive: bool) -> Iterator[None]:
        """One attempt of a writer, from its reads to its commit (module doc): the writers'
        advisory lock, shared, or ``exclusive`` for a writer that kept losing."""
        mode = "" if exclusive else "_shared"
        self._turn_statement(f"SELECT pg_advisory_lock{mode}({TURNS_KEY})")
        try:
            yield
        finally:
            self._turn_statement(f"SELECT pg_advisory_unlock{mode}({TURNS_KEY})", releasing=True)

    def _turn_statement(self, statement: str, releasing: bool = False) -> None:
        with self._turns_lock:
            try:
                if self._turns is None:
                    if releasing:
                        return  # the connection went, and its session's locks with it
                    kwargs = {k: v for k, v in self.datastore.pool.kwargs.items() if k != "row_factory"}
                    self._turns = psycopg.connect(autocommit=True, **kwargs)
                self._turns.execute(statement)
            except psycopg.Error:
                if self._turns is not None and (self._turns.closed or self._turns.broken):
                    self._turns = None
                if not releasing:
                    raise
                self.close_turns()  # a lock that could not be released: ended with the session

    def close_turns(self) -> None:
        if self._turns is not None:
            self._turns.close()
            self._turns = None

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """The events, their links and the snapshots passed along, in one transaction.  No
        retry here: a conflict, a lock or statement over its bound or a lost connection is
        raised at once (eventsourcing's ``IntegrityError`` / ``OperationalError``), for the
        application to retry from fresh state or report."""
        snapshots = kwargs.get("snapshots") or []
        events, snapshot_rows = arrays(stored_events), arrays(snapshots)  # built before the lock is taken
        ids: list[int] | None = None
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as curs:
            if stored_events:
                curs.execute(self.statements["lock"], prepare=False)
                last, position, previous = curs.execute(self.statements["head"]).fetchone()
                curs.execute(self.insert_returning, events)
                ids = [row[0] for row in curs.fetchall()]
                if (position or 0) == (last or 0):  # the chain is whole up to this transaction's events
                    self._insert_links(curs, chain.extend(previous or chain.GENESIS, (
                        (i, e.originator_id, e.originator_version, e.topic, e.state) for i, e in zip(ids, stored_events))))
            if snapshots:
                curs.execute(insert_statement(self, self.snapshots_table_name), snapshot_rows)
        return ids

    def link_backlog(self, page: int = chain.BACKLOG_PAGE) -> int:
        """Link every event that has no link yet, in order, ``page`` per transaction under the
        writers' lock (``ledger audit seal``, for logs written before the stores linked each
        event); return how many were linked."""
        linked = 0
        while True:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(self.statements["lock"], prepare=False)
                _, position, previous = curs.execute(self.statements["head"]).fetchone()
                rows = [(i, a, v, t, bytes(s)) for i, a, v, t, s in
                        curs.execute(self.statements["backlog"], [position or 0, page]).fetchall()]
                self._insert_links(curs, chain.extend(previous or chain.GENESIS, rows))
            linked += len(rows)
            if len(rows) < page:
                return linked

    def _insert_links(self, curs: Any, links: list[tuple[int, str]]) -> None:
        if links:
            curs.execute(self.statements["links"], [",".join([str(p) for p, _ in links]), ",".join([k for _, k in links])])

    def _format(self, text: str) -> Composed:
        return SQL(text).format(schema=Identifier(self.datastore.schema), events=Identifier(self.events_table_name),
                                snapshots=Identifier(self.snapshots_table_name),
                                id_type=SQL(self.datastore.originator_id_type))

    def select_many(self, ids: list[Any]) -> dict[Any, list[StoredEvent]]:
        """For each id with events: its latest snapshot, if any, then the events after it."""
        statement = self._format(SELECT_MANY)
        found: dict[Any, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            for chunk in chunks(ids):
                curs.execute(statement, [chunk])
                found.update(group(curs.fetchall()))
        return found

    def snapshot_ids(self) -> set[Any]:
        """The ids that have at least one snapshot."""
        statement = self._format("SELECT DISTINCT originator_id FROM {schema}.{snapshots}")
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            return {row[0] for row in curs.execute(statement)}

    def select_after(self, versions: dict[Any, int]) -> dict[Any, list[StoredEvent]]:
        """For each id: the events after the given version (ids with none are left out)."""
        statement = self._format(SELECT_AFTER)
        found: dict[Any, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            for chunk in chunks(list(versions)):
                curs.execute(statement, [chunk, [versions[i] for i in chunk]])
                found.update(group(curs.fetchall()))
        return found


class Factory(WithOrjson, base.PostgresFactory):
    application_recorder_class = Recorder
    aggregate_recorder_class = SnapshotRecorder

    def __init__(self, env: Any) -> None:
        if strtobool(env.get(self.POSTGRES_ENABLE_DB_FUNCTIONS) or "no"):
            raise OSError(f"{self.POSTGRES_ENABLE_DB_FUNCTIONS} is not supported by stores.postgres: its own insert "
                          "writes the events, their audit links and the snapshots in one transaction, which "
                          "eventsourcing's database function would bypass")
        bounds = limits.read(env)
        super().__init__(env)  # the environment stays the caller's: eventsourcing reads it again later
        self.datastore.lock_timeout = bounds["lock"]  # its SET LOCAL lock_timeout before a table lock
        self.datastore.pool.kwargs.update(limits.connection_kwargs(bounds, limits.read_only(env), events=True))
        self.datastore.pool.timeout = bounds["pool"]

    def application_recorder(self) -> Recorder:  # type: ignore[override]
        recorder = super().application_recorder()
        assert isinstance(recorder, Recorder)
        recorder.snapshots_table_name = (self.env.name.lower() or "stored") + "_snapshots"  # as aggregate_recorder("snapshots")
        return recorder
