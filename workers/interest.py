"""The hourly interest run (SPEC §8, §13 `ledger interest run`).

Reads the accounts that may owe interest from the ``interest/due`` index (not every
account), charges them in batches of many accounts per transaction, and records a run
summary.  Exactly once per (account, currency, hour) comes from the store: a charge moves
the account's version, so two runs that race on an account cannot both save (I5); the loser
recomputes from fresh state and finds the hour charged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterator

from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.domain.interest import Charge, charge_hours
from ledger.domain.times import floor_hour
from ledger.domain.platform import Platform
from ledger.service.unit_of_work import Outcome, UnitOfWork
from workers.batching import Batches, record_run

BATCH_ACCOUNTS = 500  # accounts per transaction; LEDGER_INTEREST_BATCH_ACCOUNTS through the settings


@dataclass
class InterestRun:
    """What a run did, in memory bounded by hours × currencies: its counts and totals.  The
    charges themselves go by as they are committed (``charging``); ``charges`` keeps them
    only when ``run_interest`` is asked to (tests, the demo)."""

    at: datetime
    charges: list[Charge] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    complete: bool = True  # False when asked to stop between batches
    count: int = 0  # charges recorded
    accounts: int = 0  # accounts charged
    by_hour: dict[tuple[datetime, str], tuple[int, Decimal]] = field(default_factory=dict)  # (hour, currency): charges, interest

    def add(self, charges: list[Charge]) -> None:
        """One account's charges, as its batch is committed."""
        self.count += len(charges)
        self.accounts += bool(charges)
        for c in charges:
            number, interest = self.by_hour.get((c.hour, c.currency), (0, Decimal(0)))
            self.by_hour[(c.hour, c.currency)] = number + 1, interest + c.interest

    def totals(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for (_, currency), (_, interest) in self.by_hour.items():
            out[currency] = out.get(currency, Decimal(0)) + interest
        return dict(sorted(out.items()))

    @property
    def first_hour(self) -> datetime | None:
        return min((hour for hour, _ in self.by_hour), default=None)


def run_interest(
    app: LedgerApp, run_at: datetime,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    batch_accounts: int = BATCH_ACCOUNTS,
    keep: bool = True,
) -> InterestRun:
    """Charge every hour ≤ run_at not yet charged; events carry at = run_at.  ``keep``: hold
    every charge in ``run.charges`` (else only the counts and totals)."""
    run = InterestRun(run_at)
    for charge in charging(app, run, progress, stop, batch_accounts):
        if keep:
            run.charges.append(charge)
    return run


def charging(
    app: LedgerApp, run: InterestRun,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    batch_accounts: int = BATCH_ACCOUNTS,
) -> Iterator[Charge]:
    """The run, as it goes: each charge once its batch is committed, ``run`` kept up with
    the counts, and the run's summary recorded when the iterator is spent.

    ``stop`` is asked between batches: a stopped run leaves whole batches saved or not at
    all (one transaction each), and the next run charges what this one did not reach."""
    run_at = run.at
    due = app.reading(lambda: app.find(ids.INTEREST_DUE))
    accounts = sorted(due.accounts) if due else []
    platforms: dict[datetime, Platform] = {}

    def platform_at(hour: datetime) -> Platform:
        if hour not in platforms:
            platforms[hour] = app.platform_at(hour)
        return platforms[hour]

    last = floor_hour(run_at)

    def step(uow: UnitOfWork, account: str) -> Outcome:
        with uow.command(run_at) as u:
            acct = u.account(account)
            u.give([])
            if any(hour <= last for hour in acct.interest_due.values()):  # else all charged already
                acct.check_time(run_at)  # refused: the account already has events after run_at
                charges = charge_hours(acct, run_at, platform_at, u.platform)
                if charges:
                    clock = u.interest_clock()
                    latest = max(c.hour for c in charges)
                    if clock.closed_until is None or latest > clock.closed_until:
                        clock.close(latest, run_at)
                u.give(charges)
        return u.outcome

    batches = Batches(app, accounts, step, batch_accounts, stop, progress)
    for _, charges in batches:
        run.add(charges)
        yield from charges
    run.skipped.extend(batches.skipped)
    run.complete = batches.complete
    record_summary(app, run)


def record_summary(app: LedgerApp, run: InterestRun) -> None:
    record_run(app, run.at, "interest", lambda log: log.interest_run_completed(
        run.at, run.first_hour, floor_hour(run.at), run.accounts, run.count, run.totals(), run.complete))
