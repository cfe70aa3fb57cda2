"""Time `ledger audit verify` over N events on one store.

    python -m bench.audit_verify [--events 1000000] [--store postgres|sqlite]

Builds the log with deposits into 1,000 accounts (not timed), seals it, catches up the read
models, then times verify (chain, double entry, replay of every aggregate, read models,
interest recomputation) and reports events per second.
"""
from __future__ import annotations

import argparse
import time
from datetime import timedelta

from bench.common import START, fresh_url, open_app
from ledger.store import persistence_env
from projections import audit, runner
from projections.sql import ViewDatabase

ACCOUNTS = 1000


def build(app, events: int) -> None:  # type: ignore[no-untyped-def]
    at = START.isoformat()
    app.apply([{"type": "open_account", "account": f"a{n:04d}", "at": at} for n in range(ACCOUNTS)], lambda: START)
    made, minute = ACCOUNTS, 0
    while made < events:
        minute += 1
        stamp = (START + timedelta(minutes=minute)).isoformat()
        batch = [{"type": "deposit", "account": f"a{n % ACCOUNTS:04d}", "currency": "USDT", "amount": "1", "at": stamp}
                 for n in range(min(50_000, events - made))]
        app.apply(batch, lambda: START)
        made += len(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="postgres")
    args = parser.parse_args()
    url = fresh_url(args.store)
    app = open_app(url)
    db = ViewDatabase(persistence_env(url))
    started = time.perf_counter()
    build(app, args.events)
    print(f"built {app.recorder.max_notification_id()} events in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    audit.seal(app, db)
    print(f"sealed in {time.perf_counter() - started:.1f} s", flush=True)
    runner.run(app, db)
    started = time.perf_counter()
    result = audit.verify(app, db, audit.digest(db))
    seconds = time.perf_counter() - started
    print(f"{args.store}: audit verify over {result.events_checked} events: {seconds:.1f} s "
          f"({result.events_checked / seconds:,.0f} events/s), findings: {len(result.findings)}")


if __name__ == "__main__":
    main()
