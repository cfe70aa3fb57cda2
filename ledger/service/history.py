"""An account's history as `ledger history` and the service's history page ask for it: its
events in order, those of one name only, from one instant, to another (both inclusive), a
bounded page at a time.

Nothing here reads all of an account's history.  The events are read from the store by
version ranges of at most ``CHUNK`` events.  ``--since``/``--until`` become a version range:
T1 keeps an account's events in non-decreasing ``at``, so the first version at or after
``since`` and the last at or before ``until`` are found by bisecting versions, one event read
per step.  ``--type`` is matched on the stored event's topic, before it is decoded.  A page's
cursor is the last version it gave, opaque to callers (``next_cursor``).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, Optional

from eventsourcing.utils import resolve_topic

from ledger.domain import ids
from ledger.domain.base import event_name
from ledger.domain.errors import LedgerError
from ledger.service.app import LedgerApp

CHUNK = 500  # stored events per query
MAX_PAGE = 1000  # the most events one page gives (§15: limit ≤ 1000)
CURSOR_PREFIX = "v1:"


@dataclass(frozen=True)
class Only:
    """Which events: at or after ``since``, at or before ``until``, named ``kind`` (e.g.
    ``Borrowed``); None lets every event through."""

    since: Optional[datetime] = None
    until: Optional[datetime] = None
    kind: Optional[str] = None

    def admits(self, event: Any) -> bool:
        at = event.at
        return not ((self.since and at < self.since) or (self.until and at > self.until)
                    or (self.kind and event_name(event) != self.kind))


def account_history(app: LedgerApp, account: str, only: Only = Only()) -> list[Any]:
    """The account's events that ``only`` admits, in order (``unknown_account`` when there
    is no such account).  All of them in one list: for tests and small callers; the command
    line streams (``events``)."""
    return list(events(app, account, only))


def page(app: LedgerApp, account: str, only: Only, limit: int, cursor: Optional[str]) -> tuple[list[Any], Optional[str]]:
    """At most ``limit`` (1 to ``MAX_PAGE``) of the account's events that ``only`` admits,
    after ``cursor`` (None: from the start), and the cursor of the next page (None: none
    follows).  ``unknown_account`` for no such account, ``validation_error`` for a bad limit
    or cursor."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise LedgerError("validation_error", f"limit must be a whole number from 1 to {MAX_PAGE}, not {limit!r}")
    found: list[Any] = []
    for stored in _stored(app, account, only, decode_cursor(cursor), limit + 1):
        if len(found) == limit:  # one more passes the name: the next page has it (the range bounds its time)
            return found, encode_cursor(found[-1].originator_version)
        event = app.mapper.to_domain_event(stored)
        if only.admits(event):
            found.append(event)
    return found, None


def events(app: LedgerApp, account: str, only: Only = Only(), after: int = 0) -> Iterator[Any]:
    """The account's events after version ``after`` that ``only`` admits, in order, read
    ``CHUNK`` at a time as they are consumed; ``unknown_account`` when there is no such
    account, raised before the first event."""
    return (event for event in map(app.mapper.to_domain_event, _stored(app, account, only, after, CHUNK))
            if only.admits(event))


def _stored(app: LedgerApp, account: str, only: Only, after: int, first_read: int) -> Iterator[Any]:
    """The stored events after version ``after`` in the version range of ``only``'s instants,
    of its name, undecoded; the first read of ``first_read`` (a page's size), then of
    ``CHUNK``.  ``unknown_account`` is raised before the first."""
    key = ids.account(account)
    last = last_version(app, key)
    if last == 0:
        raise LedgerError("unknown_account", f"no account {account}")
    return _reads(app, key, only, after, last, min(first_read, CHUNK))


def _reads(app: LedgerApp, key: str, only: Only, after: int, last: int, size: int) -> Iterator[Any]:
    low, high = versions(app, key, only, last)  # the versions low..high may pass: the rest cannot
    start = max(after, low - 1)
    wanted = named(only.kind)
    while start < high:
        stored = app.reading(lambda: app.recorder.select_events(key, gt=start, lte=high, limit=size))
        size = CHUNK
        if not stored:
            return
        yield from (s for s in stored if wanted(s.topic))
        start = stored[-1].originator_version


def last_version(app: LedgerApp, key: str) -> int:
    stored = app.reading(lambda: app.recorder.select_events(key, desc=True, limit=1))
    return stored[0].originator_version if stored else 0


def at_version(app: LedgerApp, key: str, version: int) -> datetime:
    stored = app.reading(lambda: app.recorder.select_events(key, gt=version - 1, lte=version, limit=1))
    return app.mapper.to_domain_event(stored[0]).at  # type: ignore[no-any-return]


def versions(app: LedgerApp, key: str, only: Only, last: int) -> tuple[int, int]:
    """The first version at or after ``only.since`` and the last at or before ``only.until``
    (``last + 1`` and 0 when there is none), by bisection on ``at`` (T1: non-decreasing)."""
    low = 1 if only.since is None else first(1, last + 1, lambda v: at_version(app, key, v) >= only.since)  # type: ignore[operator]
    high = last if only.until is None else first(1, last + 1, lambda v: at_version(app, key, v) > only.until) - 1  # type: ignore[operator]
    return low, high


def first(low: int, high: int, holds: Callable[[int], bool]) -> int:
    """The least v in [low, high) for which ``holds`` (monotone: false then true), else high."""
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def named(kind: Optional[str]) -> Callable[[str], bool]:
    """Whether a stored topic is of an event class named ``kind`` (any when None): the topic is
    resolved once per distinct topic, so old topics (ledger.service.topics) match too."""
    if kind is None:
        return lambda topic: True
    seen: dict[str, bool] = {}

    def matches(topic: str) -> bool:
        if topic not in seen:
            try:
                seen[topic] = resolve_topic(topic).__name__ == kind
            except Exception:  # noqa: BLE001 - a topic that does not resolve: decoding reports it
                seen[topic] = True
        return seen[topic]
    return matches


def encode_cursor(version: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{version}".encode()).decode().rstrip("=")


def decode_cursor(cursor: Optional[str]) -> int:
    """The version a cursor stands after (0 for None); ``validation_error`` if it is not one
    that ``page`` gave."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        rest = text.removeprefix(CURSOR_PREFIX)
        version = int(rest) if text.startswith(CURSOR_PREFIX) and rest.isdigit() else -1
    except (binascii.Error, ValueError, UnicodeDecodeError):
        version = -1
    if version < 0 or not cursor.isascii():
        raise LedgerError("validation_error", f"{cursor!r} is not a history cursor")
    return version
