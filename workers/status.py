"""`ledger status`: what the scheduled jobs last did, and what is overdue."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ledger.app import LedgerApp
from ledger.interest import floor_hour
from ledger.render import rfc3339
from workers.sweep import floor_mark

SWEEP_EVERY = timedelta(minutes=5)


def job_status(app: LedgerApp, now: datetime) -> dict[str, Any]:
    interest = app.find("runs/interest")
    due = app.find("interest/due")
    sweep = app.find("runs/sweep")
    last_hour = interest.last_hour if interest else None
    overdue = []
    accounts_due = len(due.accounts) if due else 0
    if accounts_due and (last_hour is None or last_hour < floor_hour(now)):
        overdue.append(f"interest for {rfc3339(floor_hour(now))} has not been run "
                       f"(last hour run: {rfc3339(last_hour) if last_hour else 'never'})")
    last_mark = getattr(sweep, "last_mark", None)
    if accounts_due and (last_mark is None or last_mark < floor_mark(now)):
        overdue.append(f"the sweep for {rfc3339(floor_mark(now))} has not been run "
                       f"(last mark swept: {rfc3339(last_mark) if last_mark else 'never'})")
    return {
        "now": rfc3339(now),
        "interest": {
            "last_hour": rfc3339(last_hour) if last_hour else None,
            "last_run_at": rfc3339(interest.last_run_at) if interest and interest.last_run_at else None,
            "runs": interest.runs if interest else 0,
            "accounts_due": accounts_due,
        },
        "sweep": {"last_mark": rfc3339(last_mark) if last_mark else None,
                  "last_run_at": rfc3339(sweep.last_run_at) if sweep and sweep.last_run_at else None},
        "overdue": overdue,
    }
