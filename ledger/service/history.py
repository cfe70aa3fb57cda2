"""An account's history as `ledger history` asks for it: its events in order, those of one
name only, from one instant, to another (both inclusive)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from ledger.domain.base import event_name
from ledger.domain.errors import LedgerError
from ledger.service.app import LedgerApp


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
    is no such account)."""
    return [event for event in app.history(account) if only.admits(event)]


def page(app: LedgerApp, account: str, only: Only, limit: int, cursor: Optional[str]) -> tuple[list[Any], Optional[str]]:
    """Up to ``limit`` of the events ``account_history`` gives, after ``cursor`` (the seq of
    the last event of the page before, as ``next_cursor`` gave it); the next page's cursor,
    or None when this page ends the history."""
    after = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise LedgerError("validation_error", f"cursor {cursor[:40]!r} is not one a page gave")
        after = int(cursor)
    events = [e for e in account_history(app, account, only) if e.originator_version > after]
    shown = events[:limit]
    return shown, (str(shown[-1].originator_version) if len(events) > limit else None)
