"""Accounts in batches, one transaction each, for the scheduled jobs."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator

from ledger.domain import ids
from ledger.domain.indexes import RunLog
from ledger.service.app import LedgerApp
from ledger.service.unit_of_work import Outcome, UnitOfWork
from workers.gc_tuning import fewer_collections

Step = Callable[[UnitOfWork, str], Outcome]


class Batches:
    """Iterate ``(account, value)`` over ``accounts`` whose command ``step`` kept (``value``:
    what it gave back), ``size`` accounts per transaction; a refused one goes to ``skipped``
    (its account and error).  ``stop`` is asked between batches; ``complete`` says whether
    every batch ran.  Transient store errors are retried by ``LedgerApp.transact``; a store
    that stays unreachable raises ``StoreUnavailable``."""

    def __init__(self, app: LedgerApp, accounts: list[str], step: Step, size: int,
                 stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.app, self.accounts, self.step, self.size = app, accounts, step, size
        self.stop, self.progress = stop, progress
        self.complete = True
        self.skipped: list[dict[str, str]] = []

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        with fewer_collections():
            yield from self._batches()

    def _batches(self) -> Iterator[tuple[str, Any]]:
        for start in range(0, len(self.accounts), self.size):
            if self.stop():
                self.complete = False
                return
            batch = self.accounts[start:start + self.size]
            outcomes = self.app.transact(batch, self.step, [ids.account(a) for a in batch])
            for account, outcome in zip(batch, outcomes):
                if outcome.error is None:
                    yield account, outcome.value
                else:  # refused, or ``conflict``: a batch the store kept refusing
                    self.skipped.append({"account": account, **outcome.error.as_dict()})
            if self.progress:
                self.progress(min(start + self.size, len(self.accounts)), len(self.accounts))


def record_run(app: LedgerApp, at: datetime, job: str, write: Callable[[RunLog], None]) -> None:
    """``write`` the run's summary to the job's run log (``runs/<job>``), one command at
    ``at`` in a transaction of its own."""
    def step(uow: UnitOfWork, _: Any) -> Outcome:
        with uow.command(at) as u:
            write(u.find(ids.run_log(job)) or u.add(RunLog(job=job)))
        return u.outcome

    app.transact([None], step)
