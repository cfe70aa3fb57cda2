"""Time one hourly interest run over N indebted accounts on each store.

    python -m bench.interest_run [--accounts 10000] [--store sqlite|postgres|both]

Setting up the accounts is not timed; the figure is the wall time of `run_interest` for
one hour, and accounts per second.  PostgreSQL: a fresh database on 127.0.0.1:5432.
"""
from __future__ import annotations

import argparse
import time
from datetime import timedelta

from bench.common import START, fresh_url, indebted_accounts, open_app
from workers.interest import run_interest


def measure(url: str, count: int) -> float:
    app = open_app(url)
    try:
        indebted_accounts(app, count)
        started = time.perf_counter()
        run = run_interest(app, START + timedelta(minutes=59))  # charges hour 00:00 only
        elapsed = time.perf_counter() - started
        assert len(run.charges) == count
        return elapsed
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    for store in ["sqlite", "postgres"] if args.store == "both" else [args.store]:
        seconds = measure(fresh_url(store), args.accounts)
        print(f"{store}: one hourly run over {args.accounts} indebted accounts: {seconds:.2f} s "
              f"({args.accounts / seconds:,.0f} accounts/s)")


if __name__ == "__main__":
    main()
