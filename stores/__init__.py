"""eventsourcing's SQLite and PostgreSQL stores, extended to read many aggregates at once.

The repository loads one aggregate with two queries (its latest snapshot, then the events
after it): a batch of 500 accounts would be 1,000 round trips.  ``select_many`` fetches both
for hundreds of ids in one statement.  Both stores write and read events with orjson
(``stores.transcoder``), in eventsourcing's own JSON format.  ``ledger.adapters.store.persistence_env`` names these modules
as ``PERSISTENCE_MODULE``; the ledger calls ``recorder.select_many`` when the recorder has it
and loads one by one otherwise.
"""
from __future__ import annotations

from typing import Any, Iterable

from eventsourcing.persistence import StoredEvent

from stores.transcoder import OrjsonTranscoder

SELECT_MANY_CHUNK = 500  # ids per statement


def group(rows: Iterable[Any]) -> dict[str, list[StoredEvent]]:
    """Rows of (originator_id, originator_version, topic, state), ordered per id with the
    snapshot first, as lists of stored events per id."""
    found: dict[str, list[StoredEvent]] = {}
    for originator_id, version, topic, state in rows:
        found.setdefault(originator_id, []).append(
            StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=bytes(state)))
    return found


def chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), SELECT_MANY_CHUNK):
        yield ids[start:start + SELECT_MANY_CHUNK]


class WithOrjson:
    """Factory mixin: the orjson transcoder instead of the library's json one."""

    def transcoder(self) -> OrjsonTranscoder:
        return OrjsonTranscoder()
