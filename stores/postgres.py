"""eventsourcing's PostgreSQL store with ``select_many`` (see ``stores``)."""
from __future__ import annotations

from eventsourcing.persistence import StoredEvent
from eventsourcing import postgres as base  # a module, not its classes: eventsourcing expects one factory class here
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from stores import WithOrjson, chunks, group

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
  SELECT e.originator_id, e.originator_version, e.topic, e.state, 1 AS part
    FROM snap JOIN {schema}.{events} e
      ON e.originator_id = snap.id AND e.originator_version > COALESCE(snap.version, 0)
) rows ORDER BY originator_id, part, originator_version
"""


class Recorder(base.PostgresApplicationRecorder):
    snapshots_table_name = "stored_snapshots"

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


class Factory(WithOrjson, base.PostgresFactory):
    application_recorder_class = Recorder

    def application_recorder(self) -> Recorder:  # type: ignore[override]
        recorder = super().application_recorder()
        assert isinstance(recorder, Recorder)
        recorder.snapshots_table_name = (self.env.name.lower() or "stored") + "_snapshots"  # as aggregate_recorder("snapshots")
        return recorder
