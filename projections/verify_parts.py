"""`audit verify`'s aggregate pass in several processes, for logs of many events.

The pass is per aggregate (each replayed alone, its events read once) but for what it adds
up across them: the books, the balances and pools they are compared with, the rows of the
views no account has.  So the log is cut, in (aggregate, version) order, into one range of
aggregate ids per process, of about as many events each (``eventlog.split_aggregates``);
each process opens the store itself, reads only, runs ``audit.check_aggregates`` on its
range against the same snapshot of the views the parent read, and sends back its findings
and sums; the parent adds them up, in range order (so the findings come in the order one
process gives), and runs the checks across every aggregate once.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.service.app import LedgerApp
from projections import audit, eventlog
from projections.sql import ViewDatabase


@dataclass
class Part:
    findings: list[dict[str, Any]]
    books: dict[tuple[str, str], Decimal]
    balances: audit.Balances
    pools: dict[str, Decimal]
    view_rows_left: set[tuple[str, str]]  # the views' rows no account of this part has
    view_pools: dict[str, Decimal]


def possible(app: LedgerApp) -> bool:
    """Whether other processes can open the store: not an SQLite database in memory."""
    name = str(app.env.get("SQLITE_DBNAME", ""))
    return ":memory:" not in name and "mode=memory" not in name


def check_aggregates(result: audit.Verification, app: LedgerApp, db: ViewDatabase, views: "audit.ViewRows | None",
                     last: int, processes: int) -> None:
    """``audit.check_aggregates`` over the whole log, in ``processes`` processes (0: one per CPU)."""
    processes = processes or (os.cpu_count() or 1)
    cuts = eventlog.split_aggregates(app, db, processes)
    ranges = list(zip([None, *cuts], [*cuts, None]))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited connections
    with ProcessPoolExecutor(len(ranges), mp_context=context, initializer=_open, initargs=(dict(app.env),)) as pool:
        parts = list(pool.map(_part, [(lo, hi, last, views) for lo, hi in ranges]))
    merged = audit.AggregateChecks(result, app, views)
    left = set(merged.view_rows)
    for part in parts:
        result.findings.extend(part.findings)
        for key, amount in part.books.items():
            merged.books[key] = merged.books.get(key, Decimal(0)) + amount
        merged.balances.extend(part.balances)
        merged.pools.update(part.pools)
        merged.view_pools.update(part.view_pools)
        left &= part.view_rows_left
    merged.view_rows = {key: merged.view_rows[key] for key in left}
    merged.cross()


_store: tuple[LedgerApp, ViewDatabase] | None = None  # one per process


def _open(env: dict[str, str]) -> None:
    global _store
    env = {**env, "CREATE_TABLE": "n"}  # the store is there: no DDL
    _store = LedgerApp.open(env), ViewDatabase(env)


def _part(job: tuple[str | None, str | None, int, "audit.ViewRows | None"]) -> Part:
    assert _store is not None
    lo, hi, last, views = job
    app, db = _store
    result = audit.Verification()
    checks = audit.check_aggregates(result, app, db, views, last, lo, hi, cross=False)
    return Part(result.findings, checks.books, checks.balances, checks.pools, set(checks.view_rows),
                checks.view_pools)
