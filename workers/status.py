"""`ledger status`: what the scheduled jobs last did, what is overdue, and any recorded
instant that lies in the future (T4).  `ledger status --check` exits 1 when either list is
not empty, for health checks and cron."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.horizon import FUTURE_ALLOWANCE
from ledger.domain.times import floor_hour, floor_mark, rfc3339

GRACE = timedelta(minutes=2)  # a run still under way at the top of the hour (or mark) is not late
RECENT_EVENTS = 5_000  # the newest events of the log whose instants are checked
FUTURE_SHOWN = 10  # aggregates named in the future list; the rest are counted


def job_status(app: LedgerApp, now: datetime, allowance: timedelta = FUTURE_ALLOWANCE,
               grace: timedelta = GRACE) -> dict[str, Any]:
    interest = app.find(ids.run_log("interest"))
    due = app.find(ids.INTEREST_DUE)
    sweep = app.find(ids.run_log("sweep"))
    last_hour = interest.last_hour if interest else None
    last_mark = getattr(sweep, "last_mark", None)
    indebted = len(due.accounts) if due else 0
    hour, mark = floor_hour(now), floor_mark(now)
    hour_charged = last_hour is not None and last_hour >= hour
    overdue = []
    expected_hour = floor_hour(now - grace)  # the latest hour a run should have charged by now
    if indebted and (last_hour is None or last_hour < expected_hour):
        overdue.append(f"interest for {rfc3339(expected_hour)} has not been run "
                       f"(last hour run: {rfc3339(last_hour) if last_hour else 'never'})")
    expected_mark = floor_mark(now - grace)
    if indebted and (last_mark is None or last_mark < expected_mark):
        overdue.append(f"the sweep for {rfc3339(expected_mark)} has not been run "
                       f"(last mark swept: {rfc3339(last_mark) if last_mark else 'never'})")
    future = future_instants(app, now + allowance, {
        "interest: last hour charged": last_hour,
        "interest: last run": interest.last_run_at if interest else None,
        "interest: hours closed through": getattr(app.find(ids.INTEREST_CLOCK), "closed_until", None),
        "sweep: last mark": last_mark,
        "sweep: last run": sweep.last_run_at if sweep else None,
        "platform: last change": app.platform().last_at,
    })
    return {
        "now": rfc3339(now),
        "ok": not overdue and not future,
        "interest": {
            "last_hour": rfc3339(last_hour) if last_hour else None,
            "last_run_at": rfc3339(interest.last_run_at) if interest and interest.last_run_at else None,
            "runs": interest.runs if interest else 0,
            "current_hour": rfc3339(hour),
            "indebted_accounts": indebted,
            # what is really due: the indebted accounts, while the current hour is not charged
            "accounts_due": 0 if hour_charged else indebted,
        },
        "sweep": {"last_mark": rfc3339(last_mark) if last_mark else None,
                  "last_run_at": rfc3339(sweep.last_run_at) if sweep and sweep.last_run_at else None,
                  "current_mark": rfc3339(mark)},
        "overdue": overdue,
        "allowance_seconds": int(allowance.total_seconds()),
        "future": future,
    }


def future_instants(app: LedgerApp, limit: datetime, clocks: dict[str, datetime | None]) -> list[str]:
    """Each recorded instant later than ``limit``: the runs' and the platform's clocks, and
    the latest `at` of each other aggregate (accounts, pools, indexes) among the newest
    RECENT_EVENTS events of the log, where a wrong clock upstream shows first."""
    after = f"later than {rfc3339(limit)} (now + the allowance)"
    found = [f"{name} {rfc3339(at)} is {after}" for name, at in clocks.items()
             if at is not None and at.year > 1 and at > limit]
    named = {ids.PLATFORM, ids.run_log("interest"), ids.run_log("sweep"), ids.INTEREST_CLOCK}  # their clocks are above
    latest: dict[str, datetime] = {}
    head = app.recorder.max_notification_id() or 0
    start = max(1, head - RECENT_EVENTS + 1)
    while head and start <= head:
        page = app.recorder.select_notifications(start=start, limit=1000, stop=head)
        for notification in page:
            at = getattr(app.mapper.to_domain_event(notification), "at", None)
            key = notification.originator_id
            if isinstance(at, datetime) and at > limit and key not in named and (key not in latest or at > latest[key]):
                latest[key] = at
        if len(page) < 1000:
            break
        start = page[-1].id + 1
    for aggregate, at in sorted(latest.items(), key=lambda item: item[1], reverse=True)[:FUTURE_SHOWN]:
        found.append(f"{aggregate} has an event at {rfc3339(at)}, {after}")
    if len(latest) > FUTURE_SHOWN:
        found.append(f"and {len(latest) - FUTURE_SHOWN} more aggregates with events in the future")
    return found
