"""Aggregate and event base classes with readable text ids (``account/alice``).

eventsourcing's stock ``Aggregate`` uses UUIDs; its ``BaseAggregate`` is generic in the id
type, and ``ORIGINATOR_ID_TYPE=text`` stores text ids.  These bases supply the event
classes for text ids, so an auditor reading the store sees ``account/alice`` rather than a
UUID.  Business time is the ``at`` attribute every event carries; the library's own
``timestamp`` is only when the event was recorded.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    MetaDomainEvent,
)


class LedgerEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime


class LedgerCreated(CanInitAggregate[str], LedgerEvent):
    originator_topic: str


class LedgerSnapshot(CanSnapshotAggregate[str], metaclass=MetaDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Any:
        """The library's snapshot without the events not yet saved (it drops them only for
        its own ``Aggregate`` class; loading from a snapshot starts with none anyway)."""
        snapshot = super().take(aggregate)
        snapshot.state.pop("_pending_events", None)
        aggregate.to_snapshot_state(snapshot.state)
        return snapshot

    def mutate(self, _: None) -> Any:
        """The aggregate the snapshot holds, made as its events would have left it
        (``from_snapshot_state``).  Every ledger snapshot is stored under this one class's
        topic, old ones included, so this is where each loads."""
        aggregate = super().mutate(None)
        restore = getattr(aggregate, "from_snapshot_state", None)
        if restore is not None:
            restore()
        return aggregate


class LedgerAggregate(BaseAggregate[str]):
    class Event(LedgerEvent):
        pass

    class Created(Event, LedgerCreated):
        pass

    Snapshot = LedgerSnapshot

    def to_snapshot_state(self, state: dict[str, Any]) -> None:
        """Make ``state`` (a shallow copy of the aggregate's) storable as JSON, in place."""

    def from_snapshot_state(self) -> None:
        """Undo ``to_snapshot_state`` on an aggregate just loaded from its snapshot."""

    @property
    def pending_count(self) -> int:
        return len(self._pending_events)


EVENT_META = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def event_fields(event: LedgerEvent) -> dict[str, Any]:
    """An event's own attributes, without the library's bookkeeping fields."""
    return {k: v for k, v in event.__dict__.items() if k not in EVENT_META}


def event_name(event: LedgerEvent) -> str:
    return type(event).__name__


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Apply events in order: eventsourcing's ``project_aggregate`` without its per-event
    ``isinstance`` check against a runtime Protocol, which costs a third of a load."""
    for e in events:
        aggregate = e.mutate(aggregate)
    return aggregate
