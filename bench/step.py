"""Timed steps, each run in a fresh process so its peak memory is its own.

    python -m bench.step --url URL STEP [STEP ...]

Steps run in the order given on one application; each prints one JSON line: its name, the
seconds of the timed call, the count it handled (and its unit), the log's head position after
it, and the process's own peak RSS so far (exact; its child processes, if any, are sampled by
the parent: see bench.memory).  The timed call is the one the command line makes:

- interest: ``run_interest`` for the hour before INTEREST_AT (`ledger interest run`)
- sweep: ``run_sweep`` at SWEEP_AT (`ledger repayment run`)
- stress: ``run_stress`` with BTC -20% (50,000 → 40,000) at SWEEP_AT (`ledger risk stress`);
  it records nothing (checked)
- crash: BTC falls to 40,000 at CRASH_AT (a set-up for the sweep after stress; its seconds
  are not a figure)
- projections: ``runner.rebuild``: every view from zero (`ledger projections rebuild`)
- verify: ``audit.verify`` against the current digest (`ledger audit verify`; its seal and
  catch-up of the read models run first, untimed)
- history: ``ledger.service.history.page`` (`ledger history --limit 10`): the first page of
  --account and of --other (an account of 10 events: the pages are alike), the page from the
  last event's instant of --account (`--since`), and its first page of 100, each the median
  of 21: seconds.
- asof: ``state_at``, ``platform_at`` and ``account_view`` with ``platform_owed`` at the
  instant, as `ledger account show --as-of` calls them, for --queries random instants in
  the first --events seconds after START: p50 and p99 in seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any, Callable

from bench.common import INTEREST_AT, START, SWEEP_AT, open_app
from bench.memory import peak_rss_mb
from ledger.service.app import LedgerApp
from ledger.domain import ids
from ledger.adapters.store import persistence_env
from ledger.read.views import account_view


def interest(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from workers.interest import run_interest

    due = app.find(ids.INTEREST_DUE)
    expected = len(due.accounts) if due else 0
    started = time.perf_counter()
    run = run_interest(app, INTEREST_AT, keep=False)
    seconds = time.perf_counter() - started
    charged = run.accounts
    if charged != expected or run.skipped:
        raise SystemExit(f"interest charged {charged} of {expected} accounts; skipped {run.skipped[:3]}")
    return {"seconds": seconds, "count": expected, "unit": "accounts"}


def sweep(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from workers.sweep import run_sweep

    started = time.perf_counter()
    run = run_sweep(app, SWEEP_AT)
    seconds = time.perf_counter() - started
    if run.skipped or not run.complete:
        raise SystemExit(f"the sweep skipped {run.skipped[:3]} (complete: {run.complete})")
    liquidated = sum(1 for a in run.actions if a["kind"] == "liquidation")
    return {"seconds": seconds, "count": run.accounts, "unit": "accounts", "liquidated": liquidated}


def projections(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from projections import runner
    from projections.sql import ViewDatabase

    db = ViewDatabase(persistence_env(args.url))
    try:
        started = time.perf_counter()
        events = runner.rebuild(app, db)
        return {"seconds": time.perf_counter() - started, "count": events, "unit": "events"}
    finally:
        db.close()


def verify(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from projections import audit, runner
    from projections.sql import ViewDatabase

    db = ViewDatabase(persistence_env(args.url))
    try:
        audit.seal(app, db)
        runner.run(app, db)
        started = time.perf_counter()
        result = audit.verify(app, db, audit.digest(db))
        seconds = time.perf_counter() - started
    finally:
        db.close()
    if not result.ok:
        raise SystemExit(f"audit verify found {len(result.findings)} findings: {result.findings[:3]}")
    return {"seconds": seconds, "count": result.events_checked, "unit": "events"}


def instants(events: int, queries: int, seed: int = 11) -> list[float]:
    """The as-of queries' instants, in seconds after START (the same for the baseline)."""
    rng = random.Random(seed)
    return [rng.uniform(0, events) for _ in range(queries)]


def asof(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    key, times = ids.account(args.account), []
    for offset in instants(args.events, args.queries):
        at = START + timedelta(seconds=offset)
        started = time.perf_counter()
        acct = app.state_at(key, at)
        json.dumps(account_view(acct, app.platform_at(at), lambda c: app.platform_owed(c, at)))
        times.append(time.perf_counter() - started)
    times.sort()
    return {"seconds": percentile(times, 50), "p99": percentile(times, 99), "count": len(times), "unit": "queries"}


def history(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from ledger.service.history import Only, page

    def median(account: str, only: Only, limit: int = 10) -> float:
        times = []
        for _ in range(21):
            started = time.perf_counter()
            items, _ = page(app, account, only, limit, None)
            times.append(time.perf_counter() - started)
            assert items
        return sorted(times)[10]

    last = app.recorder.select_events(ids.account(args.account), desc=True, limit=1)[0]
    since = Only(since=app.mapper.to_domain_event(last).at)
    return {"seconds": median(args.account, Only()), "other_seconds": median(args.other, Only()),
            "since_seconds": median(args.account, since), "page_100_seconds": median(args.account, Only(), 100),
            "count": 1, "unit": "pages"}


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(1, math.ceil(len(sorted_values) * p / 100)) - 1]


def stress(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from ledger.domain.money import ZERO
    from workers.stress import Shock, run_stress

    head = app.recorder.max_notification_id()
    started = time.perf_counter()
    run = run_stress(app, [Shock("BTC", Decimal(-20))], SWEEP_AT)
    seconds = time.perf_counter() - started
    if app.recorder.max_notification_id() != head or run.skipped:
        raise SystemExit(f"the stress run recorded something or skipped {run.skipped[:3]}")
    liquidated = sum(1 for r in run.rows.values() if r.liquidated)
    assert all(v >= ZERO for r in run.rows.values() for v in r.forced_repayments.values())
    return {"seconds": seconds, "count": run.accounts, "unit": "accounts", "liquidated": liquidated,
            "changed": len(run.rows)}


def crash_step(app: LedgerApp, args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import crash

    started = time.perf_counter()
    crash(app)
    return {"seconds": time.perf_counter() - started, "count": 1, "unit": "prices"}


STEPS: dict[str, Callable[[LedgerApp, argparse.Namespace], dict[str, Any]]] = {
    "stress": stress, "crash": crash_step,
    "interest": interest, "sweep": sweep, "projections": projections, "verify": verify, "asof": asof, "history": history,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step")
    parser.add_argument("--url", required=True)
    parser.add_argument("--account", default="asof", help="asof: the account")
    parser.add_argument("--other", default="few", help="history: the account to compare with")
    parser.add_argument("--events", type=int, default=0, help="asof: instants fall in START + [0, events) seconds")
    parser.add_argument("--queries", type=int, default=200, help="asof: how many instants")
    parser.add_argument("steps", nargs="+", choices=sorted(STEPS))
    args = parser.parse_args()
    app = open_app(args.url)
    try:
        for name in args.steps:
            result = STEPS[name](app, args)
            head = app.recorder.max_notification_id() or 0  # where this step's writes end
            print(json.dumps({"step": name, **result, "head": head, "rss_mb": peak_rss_mb()}), flush=True)
    finally:
        app.close()


if __name__ == "__main__":
    main()
