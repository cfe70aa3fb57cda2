"""The projection runner: pulls the notification log into the views, exactly once.

A pull loop serves both stores (SQLite recorders cannot ``subscribe()``; on PostgreSQL the
same loop is simpler than a subscription and as exact).  Each batch of notifications is
applied in one transaction together with the move of every view's tracking position.  The
position is read inside that transaction with the tracking rows locked, so a second runner
waits and then starts after this batch; the move is also conditional on the position read,
so if the views moved anyway the update touches no row and the whole batch rolls back.  A notification is
therefore applied once, a batch killed mid-way leaves nothing, and the next run resumes from
the saved position.  Notification ids are gap-free in commit order here: eventsourcing's
PostgreSQL recorder takes an exclusive table lock per insert, SQLite has one writer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ledger.service.app import LedgerApp
from projections import views
from projections.sql import ViewDatabase

BATCH_EVENTS = 1000  # events per transaction; LEDGER_PROJECTION_BATCH through the settings


class Superseded(Exception):
    """Another runner advanced the views while this batch was being applied."""


@dataclass
class Status:
    view: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return self.head - self.position


def position(db: ViewDatabase, lock: bool = False) -> int:
    """The views' position; with ``lock``, other runners wait until this transaction ends
    (PostgreSQL row locks; SQLite's BEGIN IMMEDIATE already holds the write lock)."""
    suffix = " FOR UPDATE" if lock and db.postgres else ""
    rows = db.rows("SELECT position FROM view_tracking" + suffix)
    return min((int(r[0]) for r in rows), default=0)


def run_batch(app: LedgerApp, db: ViewDatabase, limit: int = BATCH_EVENTS,
              fail_after: Callable[[int], None] = lambda n: None) -> int:
    """Apply the next ≤ ``limit`` notifications; return how many were applied."""
    with db.transaction():
        start = position(db, lock=True)  # read inside the transaction: a second runner waits here
        notifications = app.recorder.select_notifications(start=start + 1, limit=limit)
        if not notifications:
            return 0
        batch = views.Batch(db)
        for count, n in enumerate(notifications, 1):
            views.apply_event(batch, n.id, n.originator_id, app.mapper.to_domain_event(n))
            fail_after(count)
        batch.flush()
        moved = db.execute("UPDATE view_tracking SET position = ? WHERE position = ?", [notifications[-1].id, start])
        if moved != len(views.VIEWS):
            raise Superseded(f"views moved past {start} while this batch was applied")
    return len(notifications)


def run(app: LedgerApp, db: ViewDatabase, progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] = lambda: False, batch_events: int = BATCH_EVENTS) -> int:
    """Catch the views up with the log; return how many events were applied.  A batch that
    fails for a transient reason (``ledger.adapters.retry``: a lock or statement timeout, a deadlock,
    SQLite busy, a lost connection) rolls back whole and is tried again, within the app's
    retry policy; then ``StoreUnavailable``."""
    retry = app.retry
    retry.run(lambda: views.create(db), "creating the read models")
    total = 0
    head = retry.run(lambda: app.recorder.max_notification_id() or 0)
    while not stop():
        try:
            applied = retry.run(lambda: run_batch(app, db, batch_events), "projecting events into the read models")
        except Superseded:
            continue  # another runner did this batch: read the new position and go on
        if not applied:
            break
        total += applied
        if progress:
            progress(position(db), max(head, position(db)))
    return total


def rebuild(app: LedgerApp, db: ViewDatabase, progress: Callable[[int, int], None] | None = None) -> int:
    """Drop every view and replay the whole log."""
    views.drop(db)
    return run(app, db, progress)


def status(app: LedgerApp, db: ViewDatabase) -> list[Status]:
    """Each view's position and lag.  Reads only (§13: a reader may not create the views):
    in a store never projected every view is at 0."""
    head = app.recorder.max_notification_id() or 0
    found = dict(db.rows("SELECT view, position FROM view_tracking")) if built(db) else {}
    return [Status(view, int(found.get(view, 0)), head) for view in sorted(views.VIEWS)]


def built(db: ViewDatabase) -> bool:
    """Whether the views exist in this store (a runner has run once)."""
    return bool(db.rows(db.table_exists_sql(), ["view_tracking"]))
