"""Catch-up rate of the projections: every view from zero over the whole log, on each store.

    python -m bench.projections_run [--accounts 2000] [--store sqlite|postgres|both]
"""
from __future__ import annotations

import argparse
import time

from bench.common import fresh_url, indebted_accounts, open_app
from ledger.store import persistence_env
from projections import runner
from projections.sql import ViewDatabase


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    for store in ["sqlite", "postgres"] if args.store == "both" else [args.store]:
        url = fresh_url(store)
        app = open_app(url)
        indebted_accounts(app, args.accounts)
        db = ViewDatabase(persistence_env(url))
        started = time.perf_counter()
        events = runner.rebuild(app, db)
        seconds = time.perf_counter() - started
        print(f"{store}: projections caught up over {events} events in {seconds:.2f} s ({events / seconds:,.0f} events/s)")
        db.close()
        app.close()


if __name__ == "__main__":
    main()
