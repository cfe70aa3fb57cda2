"""Time one 5-minute sweep over N unified accounts with 1 % in breach, on each store.

    python -m bench.sweep_run [--accounts 10000] [--store sqlite|postgres|both]

Every account holds 1 BTC at 50,000 and owes USDT: 99 % owe 1,000, 1 % owe 40,000.  BTC then
drops to 40,000: the 1 % are liquidated (their collateral is worth 39,200).  The figure is
the wall time of `run_sweep` for that mark.
"""
from __future__ import annotations

import argparse
import time
from datetime import timedelta

from bench.common import START, fresh_url, indebted_accounts, open_app
from workers.sweep import run_sweep


def measure(url: str, count: int) -> tuple[float, int]:
    app = open_app(url)
    try:
        indebted_accounts(app, count, borrow=lambda n: "40000" if n % 100 == 0 else "1000")
        crash = START + timedelta(minutes=1)
        assert app.apply([{"type": "set_price", "currency": "BTC", "price": "40000", "at": crash.isoformat()}], lambda: crash)[0]["ok"]
        started = time.perf_counter()
        run = run_sweep(app, START + timedelta(minutes=5))
        elapsed = time.perf_counter() - started
        return elapsed, sum(1 for a in run.actions if a["kind"] == "liquidation")
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    for store in ["sqlite", "postgres"] if args.store == "both" else [args.store]:
        seconds, liquidations = measure(fresh_url(store), args.accounts)
        print(f"{store}: one sweep over {args.accounts} unified accounts, {liquidations} liquidated: {seconds:.2f} s")


if __name__ == "__main__":
    main()
