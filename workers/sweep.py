"""The 5-minute sweep (SPEC §9, §13 `ledger repayment run`).

Candidates are the accounts that owe (``interest/due``), hold a futures position
(``holders/*``) or stand alerted (``risk/alerted``, so the alert can clear): only they can
breach a quota or a risk level.  A read-only screen (``workers.screen``, over several
processes when there are many) finds the accounts pass 1 would change; pass 1 runs L1, L3
and L4 on those, from fresh state, in transactions; pass 2 runs L2 for every currency whose platform total is over its limit,
largest borrower first (ties by account id), re-reading the platform total inside each
transaction.  A mark is swept once: a completed mark is recorded in ``runs/sweep`` and a
second run for it does nothing.  Two sweeps at once act once, because every action changes
the account's version and is idempotent: the loser recomputes and finds nothing to do.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.indexes import RunLog
from ledger.domain.platform import QUOTE
from ledger.domain.times import floor_mark
from ledger.domain.sweep import Actions, platform_excess, sweep_account
from ledger.service.unit_of_work import Outcome, UnitOfWork
from workers.batching import Batches, record_run
from workers.screen import PARALLEL_FROM, PROCESSES, screen

BATCH_ACCOUNTS = 500  # accounts per transaction; LEDGER_SWEEP_BATCH_ACCOUNTS through the settings


@dataclass
class SweepRun:
    at: datetime
    mark: datetime
    actions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    already_swept: bool = False
    complete: bool = True
    accounts: int = 0


def candidates(app: LedgerApp) -> list[str]:
    names = {ids.INTEREST_DUE, ids.RISK_ALERTED} | {ids.holders(f"{c}-{QUOTE}") for c in app.platform().currencies if c != QUOTE}
    found: set[str] = set()
    for name in names:
        index = app.find(name)
        if index is not None:
            found.update(index.accounts)
    return sorted(found)


def run_sweep(
    app: LedgerApp, run_at: datetime,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    batch_accounts: int = BATCH_ACCOUNTS, processes: int = PROCESSES, parallel_from: int = PARALLEL_FROM,
) -> SweepRun:
    """Sweep the last 5-minute mark ≤ run_at; events carry at = run_at."""
    run = SweepRun(run_at, floor_mark(run_at))
    log = app.reading(lambda: app.find(ids.run_log("sweep")))
    if log is not None and log.last_mark is not None and log.last_mark >= run.mark:
        run.already_swept = True
        return run
    accounts = app.reading(lambda: candidates(app))
    run.accounts = len(accounts)
    screened = app.reading(lambda: screen(app, accounts, run_at, stop, progress, processes, parallel_from))
    owed = screened.owed

    def per_account(uow: UnitOfWork, account: str) -> Outcome:
        with uow.command(run_at) as u:  # refused: later events than run_at, or a price missing
            acct = u.account(account)
            acct.check_time(run_at)
            actions = sweep_account(acct, u.platform, run_at)
            limited = u.platform.platform_limits
            u.give((actions.items, {c: v for c, v in acct.liabilities().items() if c in limited}))
        return u.outcome

    first_pass = Batches(app, screened.flagged, per_account, batch_accounts, stop)
    for account, (actions, owes) in first_pass:
        run.actions.extend(actions)
        owed[account] = owes
    run.skipped.extend(first_pass.skipped)
    run.complete = screened.complete and first_pass.complete
    if run.complete:
        platform_pass(app, run, owed, stop, batch_accounts)
    if run.complete:
        record_summary(app, run)
    return run


def platform_pass(app: LedgerApp, run: SweepRun, owed: dict[str, dict[str, Decimal]], stop: Callable[[], bool],
                  batch_accounts: int = BATCH_ACCOUNTS) -> None:
    """L2: for each currency over its platform limit, the largest borrowers repay first."""
    platform = app.reading(app.platform)
    for currency, limit in sorted(platform.platform_limits.items()):
        if app.reading(lambda: app.platform_owed(currency)) <= limit:
            continue
        borrowers = sorted((a for a in owed if owed[a].get(currency)), key=lambda a: (-owed[a][currency], a))

        def repay_share(uow: UnitOfWork, account: str, currency: str = currency, limit: Decimal = limit) -> Outcome:
            with uow.command(run.at) as u:
                actions = Actions(account)
                excess = u.platform_owed(currency) - limit  # read inside the transaction
                if excess > 0:
                    platform_excess(u.account(account), currency, excess, u.platform, run.at, actions)
                u.give(actions.items)
            return u.outcome

        second_pass = Batches(app, borrowers, repay_share, batch_accounts, stop)
        for _, actions in second_pass:
            run.actions.extend(actions)
        run.skipped.extend(second_pass.skipped)  # the store kept refusing: the next mark tries again
        run.complete = run.complete and second_pass.complete


def record_summary(app: LedgerApp, run: SweepRun) -> None:
    kinds = dict(sorted(Counter(a["kind"] for a in run.actions).items()))

    def write(log: RunLog) -> None:
        if log.last_mark is None or log.last_mark < run.mark:  # type: ignore[attr-defined]
            log.sweep_completed(run.at, run.mark, run.accounts, kinds)  # type: ignore[attr-defined]

    record_run(app, run.at, "sweep", write)
