"""Shared set-up for the benchmark scripts: fresh stores and many indebted unified accounts."""
from __future__ import annotations

import os
import tempfile
import uuid
from datetime import datetime, timezone
from typing import Callable

from ledger.app import LedgerApp
from ledger.store import persistence_env

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def fresh_url(store: str) -> str:
    """A new SQLite file, or a new database on the local PostgreSQL server."""
    if store == "sqlite":
        return f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.db')}"
    import psycopg

    name = f"ledger_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def open_app(url: str) -> LedgerApp:
    return LedgerApp.open(persistence_env(url))


def indebted_accounts(app: LedgerApp, count: int, borrow: Callable[[int], str] = lambda n: "1000") -> None:
    """`count` unified accounts, each with 1 BTC (at 50,000) and a USDT loan of borrow(n),
    withdrawn (spent), so the loan is backed by the BTC alone."""
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
                 {"type": "borrow", "account": a, "currency": "USDT", "amount": borrow(n), "at": at},
                 {"type": "withdraw", "account": a, "currency": "USDT", "amount": borrow(n), "at": at}]
    results = app.apply(cmds, lambda: START)
    assert all(r["ok"] for r in results), next(r for r in results if not r["ok"])
