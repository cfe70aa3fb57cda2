"""Where the topics of stored events live now.

eventsourcing stores a *topic* with every event (``ledger.domain.account:Account.Deposited``), every
snapshot (``ledger.domain.base:LedgerSnapshot``), and inside every created event and snapshot the
aggregate's own (``ledger.domain.account:Account``).  Moving or renaming a module or class changes
the topic of what is written from then on, never of what is stored: without a way back, an
old store no longer loads.  ``MOVED`` is that way back: each old topic, a module
(``ledger.domain.account``) or a class in it (``ledger.domain.indexes:LendingPool``), names where it lives
now, and ``register`` tells the library (``eventsourcing.utils.register_topic``), which then
resolves every topic under the old one, nested event classes included, to the new place.

A move adds one line here and changes nothing else; tests/test_topics.py checks every line,
and tests/test_fixture_store.py opens a store written before any move.  Code that filters
stored events by topic (``LedgerApp.account_ids``) asks ``stored_topics`` for every topic a
class has been stored under.  See docs/rules.md §15.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterator, Mapping

from eventsourcing.utils import get_topic, register_topic

# old topic -> the topic it lives at now (a module for a module, a class for a class)
MOVED: dict[str, str] = {
    # issue 14: ledger/ split by trade; the modules whose classes are stored moved to ledger/domain/
    "ledger.account": "ledger.domain.account",
    "ledger.base": "ledger.domain.base",
    "ledger.indexes": "ledger.domain.indexes",
    "ledger.platform": "ledger.domain.platform",
}


def _locate(topic: str) -> Any:
    module_name, _, qualname = topic.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split(".") if qualname else ():
        found = getattr(found, part)
    return found


def register(moved: Mapping[str, str] | None = None) -> None:
    """Make every old topic resolve to where it lives now (idempotent; a topic already
    registered for something else is the library's ``TopicError``)."""
    for old, new in (MOVED if moved is None else moved).items():
        register_topic(old, _locate(new))


def stored_topics(cls: type, moved: Mapping[str, str] | None = None) -> list[str]:
    """Every topic ``cls`` may be stored under: its own, and its old ones."""
    return [get_topic(cls), *_old_topics(get_topic(cls), MOVED if moved is None else moved)]


def _old_topics(topic: str, moved: Mapping[str, str]) -> Iterator[str]:
    for old, new in moved.items():
        separator = "." if ":" in new else ":"
        if topic == new:
            yield old
        elif topic.startswith(new + separator):
            yield old + topic[len(new):]
