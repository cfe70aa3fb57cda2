"""The sweep's read-only first look: which accounts would it change?

Loading and checking every account that owes is most of a sweep; changing them is a few.
The screen loads accounts a chunk at a time, asks the sweep's own tests whether it would
change them (``ledger.domain.sweep.needs_sweep``) and keeps those and any that fail, writing
nothing.  With many accounts the chunks are spread over processes: each opens the store
itself and only reads, so they never conflict.  The act pass then sweeps the flagged
accounts in transactions from fresh state, so an account that changed since it was screened
is judged on its new state; one that changed into breach after its screen waits for the
next mark, exactly as if it had changed after a one-pass sweep had read it.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.errors import LedgerError
from ledger.domain.platform import QUOTE
from ledger.domain.sweep import needs_sweep
from workers.gc_tuning import fewer_collections

CHUNK_ACCOUNTS = 2_000  # accounts per read (a chunk holds its aggregates in memory)
PROCESSES = 0  # screening processes, 0: one per CPU; LEDGER_SWEEP_PROCESSES through the settings
PARALLEL_FROM = 20_000  # accounts; LEDGER_SWEEP_PARALLEL_FROM through the settings


@dataclass
class Screened:
    flagged: list[str] = field(default_factory=list)  # in the order screened
    owed: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # the rest: what they owe (L2)
    complete: bool = True

    def add(self, part: tuple[list[str], dict[str, dict[str, Decimal]]]) -> None:
        self.flagged.extend(part[0])
        self.owed.update(part[1])


def check(app: LedgerApp, accounts: list[str], run_at: datetime) -> tuple[list[str], dict[str, dict[str, Decimal]]]:
    """The accounts of ``accounts`` the sweep would change or fail on; for the others, what
    they owe of each currency that has a platform limit (all L2 needs)."""
    platform = app.platform()
    limited = platform.platform_limits
    loaded = app.repository.get_many([ids.account(a) for a in accounts])  # type: ignore[attr-defined]
    flagged, owed = [], {}
    for account in accounts:
        acct = loaded[ids.account(account)]
        try:
            acct.check_time(run_at)
            booked = acct.mark_upl(platform, run_at)  # in memory: the derived figure at the mark
            needed = needs_sweep(acct, platform) or (booked and QUOTE in limited)  # L2 counts it booked
        except LedgerError:
            flagged.append(account)  # the act pass reports why
            continue
        if needed:
            flagged.append(account)
        else:
            liabilities = {c: v for c, v in acct.liabilities().items() if c in limited}
            if liabilities:
                owed[account] = liabilities
    return flagged, owed


def screen(app: LedgerApp, accounts: list[str], run_at: datetime,
           stop: Callable[[], bool] = lambda: False,
           progress: Callable[[int, int], None] | None = None,
           processes: int = PROCESSES, parallel_from: int = PARALLEL_FROM) -> Screened:
    """``check`` over every account, in this process or, from ``parallel_from`` accounts on,
    in ``processes`` processes (0: one per CPU).  ``stop`` is asked between chunks."""
    processes = processes or (os.cpu_count() or 1)
    chunks = [accounts[start:start + CHUNK_ACCOUNTS] for start in range(0, len(accounts), CHUNK_ACCOUNTS)]
    screened = Screened()
    if len(accounts) < parallel_from or processes < 2:
        parts: Any = (check(app, chunk, run_at) for chunk in chunks)
        with fewer_collections():
            return collect(screened, parts, chunks, len(accounts), stop, progress)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited connections
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_open, initargs=(dict(app.env),)) as pool:
        futures: list[Future[Any]] = [pool.submit(_check, chunk, run_at) for chunk in chunks]
        collect(screened, (f.result() for f in futures), chunks, len(accounts), stop, progress)
        for future in futures:
            future.cancel()
    return screened


def collect(screened: Screened, parts: Any, chunks: list[list[str]], total: int,
            stop: Callable[[], bool], progress: Callable[[int, int], None] | None) -> Screened:
    done = 0
    for chunk in chunks:
        if stop():
            screened.complete = False
            break
        screened.add(next(parts))
        done += len(chunk)
        if progress:
            progress(done, total)
    return screened


_app: LedgerApp | None = None  # one per screening process


def _open(env: dict[str, str]) -> None:
    global _app
    _app = LedgerApp.open({**env, "CREATE_TABLE": "n"})  # the parent made the tables: no DDL races


def _check(accounts: list[str], run_at: datetime) -> tuple[list[str], dict[str, dict[str, Decimal]]]:
    assert _app is not None
    with fewer_collections():
        return check(_app, accounts, run_at)
