"""Time one hourly interest run over N indebted accounts on each store.

    python -m bench.interest_run [--accounts 10000] [--store sqlite|postgres|both]

Setting up the accounts is not timed; the figure is the wall time of `run_interest` for
one hour, and accounts per second.  PostgreSQL: a fresh database on 127.0.0.1:5432.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from ledger.app import LedgerApp
from ledger.store import persistence_env
from workers.interest import run_interest

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def indebted(app: LedgerApp, count: int) -> None:
    at = START.isoformat()
    cmds: list[dict] = [
        {"type": "set_platform_flags", "whitelist_required": False, "at": at},
        {"type": "set_price", "currency": "BTC", "price": "50000", "at": at},
        {"type": "set_interest_rate", "currency": "USDT", "hourly_rate": "0.0001", "at": at},
    ]
    for n in range(count):
        a = f"acct-{n:06d}"
        cmds += [{"type": "open_account", "account": a, "at": at},
                 {"type": "complete_risk_assessment", "account": a, "score": 50, "agreements_version": "v1", "at": at},
                 {"type": "switch_mode", "account": a, "mode": "unified", "at": at},
                 {"type": "deposit", "account": a, "currency": "BTC", "amount": "1", "at": at},
                 {"type": "borrow", "account": a, "currency": "USDT", "amount": "1000", "at": at}]
    results = app.apply(cmds, lambda: START)
    assert all(r["ok"] for r in results)


def postgres_url() -> str:
    import psycopg

    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def measure(url: str, count: int) -> float:
    app = LedgerApp.open(persistence_env(url))
    try:
        indebted(app, count)
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
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    for store in stores:
        url = f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.db')}" if store == "sqlite" else postgres_url()
        seconds = measure(url, args.accounts)
        print(f"{store}: one hourly run over {args.accounts} indebted accounts: {seconds:.2f} s "
              f"({args.accounts / seconds:,.0f} accounts/s)")


if __name__ == "__main__":
    main()
