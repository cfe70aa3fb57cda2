"""The audit chain (docs/audit.md §2): one link per stored event, kept in ``audit_chain``.

Link n = sha256(link n − 1 | position | aggregate id | version | topic | stored bytes), with
the genesis link before the first event.  The stores write the links of a transaction's
events in that same transaction (``stores.sqlite``, ``stores.postgres``): writers are
serialised (SQLite's write lock, PostgreSQL's ``LOCK TABLE … IN EXCLUSIVE MODE`` on the
events table), so the last link read inside the transaction is the previous one.

A writer links its events only when every earlier event is linked (the chain's head is the
last event before its own).  Otherwise — a log written before the stores did this, or a
chain someone cut — it leaves its events unlinked: never a link over an event it did not
write itself.  ``ledger audit seal`` then links what has no link yet, in order, under the same
lock (``backlog``), after which writers link again.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable

GENESIS = "0" * 64
TABLE = "audit_chain"
DDL = "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY, link TEXT NOT NULL)"
BACKLOG_PAGE = 1000  # events linked per transaction by `ledger audit seal`

Row = tuple[int, Any, int, str, bytes]  # position, aggregate id, version, topic, stored bytes


def link(previous: str, position: int, originator_id: Any, version: int, topic: str, state: bytes) -> str:
    body = f"{previous}|{position}|{originator_id}|{version}|{topic}|".encode() + state
    return hashlib.sha256(body).hexdigest()


def extend(previous: str, rows: Iterable[Row]) -> list[tuple[int, str]]:
    """(position, link) for each row, in order, chained from ``previous``."""
    links = []
    for position, originator_id, version, topic, state in rows:
        previous = link(previous, position, originator_id, version, topic, state)
        links.append((position, previous))
    return links


def head(rows: list[tuple[Any, ...]]) -> tuple[int, str]:
    """The chain's last (position, link), from the rows of ``SELECT position, link … LIMIT 1``."""
    return (int(rows[0][0]), rows[0][1]) if rows else (0, GENESIS)
