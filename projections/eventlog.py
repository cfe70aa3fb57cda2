"""The event log read in SQL for the audit, a page at a time, on a connection that may be
read-only: in position order with each event's link, and in aggregate order.

``audit verify`` reads the log twice this way without holding it: by position (the chain,
double entry, replay) with each event's link joined from ``audit_chain``, and by
(aggregate, version) for the per-aggregate checks (versions contiguous from 1, T1).  Both
are keyset pages over a primary key.  ``audit_chain`` may not exist yet (nothing was ever
sealed, and a reader may not create it): then no event has a link.
"""
from __future__ import annotations

from typing import Any, Iterator

from eventsourcing.persistence import Notification

from projections.sql import ViewDatabase

PAGE = 1000


def events_table(app: Any, db: ViewDatabase) -> tuple[str, str]:
    """The events table's name and the column that holds each event's position."""
    return app.recorder.events_table_name, ("notification_id" if db.postgres else "rowid")


def has_chain(db: ViewDatabase) -> bool:
    return bool(db.rows(db.table_exists_sql(), ["audit_chain"]))


def by_position(app: Any, db: ViewDatabase, after: int = 0) -> Iterator[tuple[Notification, str | None]]:
    """Every event after position ``after`` in position order, with its link (None: none)."""
    table, pos = events_table(app, db)
    if has_chain(db):
        sql = (f"SELECT e.{pos}, e.originator_id, e.originator_version, e.topic, e.state, c.link FROM {table} e "
               f"LEFT JOIN audit_chain c ON c.position = e.{pos} AND c.position > ? "  # bound: a merge join starts here
               f"WHERE e.{pos} > ? ORDER BY e.{pos} LIMIT ?")
    else:
        sql = (f"SELECT {pos}, originator_id, originator_version, topic, state, NULL FROM {table} "
               f"WHERE {pos} > ? ORDER BY {pos} LIMIT ?")
    bounds = sql.count("?") - 1  # the join and the log both start after ``after``
    while True:
        page = db.rows(sql, [after] * bounds + [PAGE])
        for position, originator_id, version, topic, state, link in page:
            yield Notification(id=int(position), originator_id=originator_id, originator_version=int(version),
                               topic=topic, state=state), link
        if len(page) < PAGE:
            return
        after = int(page[-1][0])


def by_aggregate(app: Any, db: ViewDatabase, lo: str | None = None,
                 hi: str | None = None) -> Iterator[tuple[str, int, int, str, Any]]:
    """Every event as (aggregate, version, position, topic, state), ordered by aggregate and
    version; ``lo``/``hi``: only the aggregates with ids in [lo, hi)."""
    table, pos = events_table(app, db)
    columns = f"SELECT originator_id, originator_version, {pos}, topic, state FROM {table}"
    upper, bound = ("originator_id < ? AND ", [hi]) if hi is not None else ("", [])
    order = "ORDER BY originator_id, originator_version LIMIT ?"
    if lo is None:
        page = db.rows(f"{columns} WHERE {upper}1 = 1 {order}", bound + [PAGE])
    else:
        page = db.rows(f"{columns} WHERE {upper}originator_id >= ? {order}", bound + [lo, PAGE])
    rest = f"{columns} WHERE {upper}(originator_id, originator_version) > (?, ?) {order}"
    while True:
        for aggregate, version, position, topic, state in page:
            yield aggregate, int(version), int(position), topic, state
        if len(page) < PAGE:
            return
        page = db.rows(rest, bound + [page[-1][0], page[-1][1], PAGE])


def split_aggregates(app: Any, db: ViewDatabase, parts: int) -> list[str]:
    """Up to ``parts - 1`` aggregate ids that cut the log, in (aggregate, version) order, into
    parts of about as many events each (an aggregate never split): the lower bounds of every
    part but the first."""
    table, _ = events_table(app, db)
    total = int(db.rows(f"SELECT COUNT(*) FROM {table}")[0][0] or 0)
    cuts: list[str] = []
    for k in range(1, parts):
        found = db.rows(f"SELECT originator_id FROM {table} ORDER BY originator_id, originator_version "
                        "LIMIT 1 OFFSET ?", [total * k // parts])
        if found and (not cuts or found[0][0] != cuts[-1]):  # in the store's order (its collation)
            cuts.append(found[0][0])
    return cuts


def of_aggregate(app: Any, db: ViewDatabase, aggregate: str) -> Iterator[tuple[int, int, str, Any]]:
    """One aggregate's events as (version, position, topic, state), in version order."""
    table, pos = events_table(app, db)
    sql = (f"SELECT originator_version, {pos}, topic, state FROM {table} "
           "WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version LIMIT ?")
    after = 0
    while True:
        page = db.rows(sql, [aggregate, after, PAGE])
        for version, position, topic, state in page:
            yield int(version), int(position), topic, state
        if len(page) < PAGE:
            return
        after = int(page[-1][0])


def linked_but_missing(app: Any, db: ViewDatabase) -> Iterator[int]:
    """Positions that have a link but no event (deleted events), in order."""
    if not has_chain(db):
        return
    table, pos = events_table(app, db)
    after = 0
    while True:
        page = db.rows(f"SELECT c.position FROM audit_chain c LEFT JOIN {table} e ON e.{pos} = c.position "
                       f"WHERE e.{pos} IS NULL AND c.position > ? ORDER BY c.position LIMIT ?", [after, PAGE])
        yield from (int(p) for (p,) in page)
        if len(page) < PAGE:
            return
        after = int(page[-1][0])


def link_at(db: ViewDatabase, position: int) -> str | None:
    if not has_chain(db):
        return None
    rows = db.rows("SELECT link FROM audit_chain WHERE position = ?", [position])
    return rows[0][0] if rows else None


def chain_head(db: ViewDatabase) -> int:
    """The highest linked position (0: none)."""
    if not has_chain(db):
        return 0
    return int(db.rows("SELECT MAX(position) FROM audit_chain")[0][0] or 0)
