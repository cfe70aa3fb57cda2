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
from ledger.domain.errors import LedgerError
from ledger.domain.indexes import RunLog
from ledger.domain.platform import QUOTE
from ledger.domain.times import floor_mark
from ledger.domain.sweep import Actions, platform_excess, sweep_account
from ledger.service.unit_of_work import UnitOfWork
from workers.batching import Batches
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

    def per_account(uow: UnitOfWork, account: str) -> dict[str, Any]:
        uow.begin(run_at)
        acct = uow.account(account)
        try:
            acct.check_time(run_at)
            actions = sweep_account(acct, uow.platform, run_at)
        except LedgerError as error:  # later events than run_at, or a price missing
            uow.rollback()
            return {"ok": False, "account": account, "error": error.as_dict()}
        uow.commit()
        limited = uow.platform.platform_limits
        return {"ok": True, "account": account, "actions": actions.items,
                "owed": {c: v for c, v in acct.liabilities().items() if c in limited}}

    first_pass = Batches(app, screened.flagged, per_account, batch_accounts, stop)
    for result in first_pass:
        if result["ok"]:
            run.actions.extend(result["actions"])
            owed[result["account"]] = result["owed"]
        else:
            run.skipped.append({"account": result["account"], **result["error"]})
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

        def repay_share(uow: UnitOfWork, account: str, currency: str = currency, limit: Decimal = limit) -> dict[str, Any]:
            uow.begin(run.at)
            excess = uow.platform_owed(currency) - limit  # read inside the transaction
            if excess <= 0:
                return {"ok": True, "account": account, "actions": []}
            actions = Actions(account)
            platform_excess(uow.account(account), currency, excess, uow.platform, run.at, actions)
            uow.commit()
            return {"ok": True, "account": account, "actions": actions.items}

        second_pass = Batches(app, borrowers, repay_share, batch_accounts, stop)
        for result in second_pass:
            if result["ok"]:
                run.actions.extend(result["actions"])
            else:  # the store kept refusing the transaction: the next mark tries again
                run.skipped.append({"account": result["account"], **result["error"]})
        run.complete = run.complete and second_pass.complete


def record_summary(app: LedgerApp, run: SweepRun) -> None:
    kinds = dict(sorted(Counter(a["kind"] for a in run.actions).items()))

    def step(uow: UnitOfWork, _: Any) -> dict[str, Any]:
        uow.begin(run.at)
        log = uow.find(ids.run_log("sweep")) or uow.add(RunLog(job="sweep"))
        if log.last_mark is None or log.last_mark < run.mark:  # type: ignore[attr-defined]
            log.sweep_completed(run.at, run.mark, run.accounts, kinds)  # type: ignore[attr-defined]
        uow.commit()
        return {"ok": True}

    app.transact([None], step)
