"""eventsourcing's PostgreSQL store with ``select_many`` (see ``stores``)."""
from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing import postgres as base  # a module, not its classes: eventsourcing expects one factory class here
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from stores import WithOrjson, chunks, group

# Each id is read through the primary key: OFFSET 0 keeps the planner from turning the
# per-id subquery into one hash join over the whole table (it guesses hundreds of events per
# id; most aggregates have a few).
SELECT_MANY = """
WITH snap AS (
  SELECT ids.id, s.originator_version AS version, s.topic, s.state
  FROM unnest(%s::text[]) AS ids(id)
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
FROM unnest(%s::text[], %s::bigint[]) AS known(id, version)
CROSS JOIN LATERAL (SELECT originator_version, topic, state FROM {schema}.{events}
                    WHERE originator_id = known.id AND originator_version > known.version OFFSET 0) e
ORDER BY known.id, e.originator_version
"""
INSERT_ARRAYS = """
INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[])
"""


def insert_arrays(recorder: base.PostgresAggregateRecorder, curs: Any, stored_events: Sequence[StoredEvent],
                  returning: bool, table: str | None = None) -> None:
    """eventsourcing's insert with the rows sent as four arrays of plain values: the library
    sends an array of a composite type, which psycopg builds as text in Python (a third of a
    batch's save time)."""
    statement = SQL(INSERT_ARRAYS + (" RETURNING notification_id" if returning else "")).format(
        schema=Identifier(recorder.datastore.schema), table=Identifier(table or recorder.events_table_name))
    curs.execute(statement, [[e.originator_id for e in stored_events],
                             [e.originator_version for e in stored_events],
                             [e.topic for e in stored_events],
                             [e.state for e in stored_events]])


class SnapshotRecorder(base.PostgresAggregateRecorder):
    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        insert_arrays(self, curs, stored_events, returning=False)


class Recorder(base.PostgresApplicationRecorder):
    snapshots_table_name = "stored_snapshots"
    inserts_snapshots = True  # LedgerApp.save passes them with the events: one transaction

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """Before the events, in their transaction: the snapshots passed along."""
        if kwargs.get("snapshots"):
            insert_arrays(self, curs, kwargs["snapshots"], returning=False, table=self.snapshots_table_name)

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        """As eventsourcing's: lock the table, notify, insert returning the notification ids
        in order."""
        self._lock_table(curs)
        self._notify_channel(curs)
        insert_arrays(self, curs, stored_events, returning=True)

    def select_many(self, ids: list[str]) -> dict[str, list[StoredEvent]]:
        """For each id with events: its latest snapshot, if any, then the events after it."""
        statement = SQL(SELECT_MANY).format(schema=Identifier(self.datastore.schema),
                                            events=Identifier(self.events_table_name),
                                            snapshots=Identifier(self.snapshots_table_name))
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            for chunk in chunks(ids):
                curs.execute(statement, [chunk])
                found.update(group(curs.fetchall()))
        return found

    def snapshot_ids(self) -> set[str]:
        """The ids that have at least one snapshot."""
        statement = SQL("SELECT DISTINCT originator_id FROM {schema}.{snapshots}").format(
            schema=Identifier(self.datastore.schema), snapshots=Identifier(self.snapshots_table_name))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            return {row[0] for row in curs.execute(statement)}

    def select_after(self, versions: dict[str, int]) -> dict[str, list[StoredEvent]]:
        """For each id: the events after the given version (ids with none are left out)."""
        statement = SQL(SELECT_AFTER).format(schema=Identifier(self.datastore.schema),
                                             events=Identifier(self.events_table_name))
        found: dict[str, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            for chunk in chunks(list(versions)):
                curs.execute(statement, [chunk, [versions[i] for i in chunk]])
                found.update(group(curs.fetchall()))
        return found


class Factory(WithOrjson, base.PostgresFactory):
    application_recorder_class = Recorder
    aggregate_recorder_class = SnapshotRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        # PostgreSQL compiles (JIT) any plan whose estimated cost is high, as a read of 500
        # ids is: 200 ms of compiling for a 3 ms read.  Off for this store's connections.
        self.datastore.pool.kwargs["options"] = "-c jit=off" + (
            " -c default_transaction_read_only=on" if self.env.get("READ_ONLY") == "yes" else "")  # ledger.store

    def application_recorder(self) -> Recorder:  # type: ignore[override]
        recorder = super().application_recorder()
        assert isinstance(recorder, Recorder)
        recorder.snapshots_table_name = (self.env.name.lower() or "stored") + "_snapshots"  # as aggregate_recorder("snapshots")
        return recorder
