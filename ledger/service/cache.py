"""Aggregates as this process last saved them, brought up to date before each use.

A batch of commands used to load every account it touched from the store: the latest
snapshot and every event after it, decoded and replayed, although this process had saved
that very state one batch earlier.  The cache keeps what a unit of work saved; the next unit
of work takes an aggregate out (so no two ever share one), asks the store in one query for
events other writers added after its version, and applies them.  An aggregate goes back in
only once its unit of work is saved; a batch that fails or loses a race leaves nothing
behind, and its retry reads the store afresh.  At most ``maxsize`` aggregates are kept,
least recently used first out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable

from ledger.domain.base import replay

MAX_AGGREGATES = 20_000  # the default; LEDGER_CACHE_AGGREGATES through the settings (entrypoints.compose)


class AggregateCache:
    def __init__(self, repository: Any, maxsize: int = MAX_AGGREGATES) -> None:
        self._repository = repository
        self._select_after = getattr(repository.event_store.recorder, "select_after", None)
        self._to_event = repository.event_store.mapper.to_domain_event
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize if self._select_after is not None else 0  # a store that cannot say what is new: off

    def load(self, keys: list[str]) -> dict[str, Any]:
        """Each key's aggregate as the store has it now, or None where it has no events."""
        with self._lock:
            taken = {k: self._entries.pop(k) for k in keys if k in self._entries}
        found: dict[str, Any] = {}
        if taken:
            newer = self._select_after({k: agg.version for k, agg in taken.items()})
            for key, agg in taken.items():
                found[key] = replay(agg, map(self._to_event, newer.get(key, ())))
        missing = [k for k in keys if k not in taken]
        if missing:
            found.update(self._repository.get_many(missing))
        return found

    def keep(self, aggregates: Iterable[Any]) -> None:
        """Aggregates just saved (no pending events): the state the store now has."""
        if not self.maxsize:
            return
        with self._lock:
            for agg in aggregates:
                if agg is not None:
                    assert not agg.pending_count, f"{agg.id} has unsaved events"
                    self._entries[agg.id] = agg
                    self._entries.move_to_end(agg.id)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
