"""Accounts in batches, one transaction each, for the scheduled jobs."""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ledger.domain import ids
from ledger.service.app import LedgerApp
from ledger.service.unit_of_work import UnitOfWork
from workers.gc_tuning import fewer_collections

Step = Callable[[UnitOfWork, str], dict[str, Any]]


class Batches:
    """Iterate ``step``'s results over ``accounts``, ``size`` accounts per transaction (a
    rejected result always names its account).  ``stop`` is asked between batches;
    ``complete`` says whether every batch ran.  Transient store errors are retried by
    ``LedgerApp.transact``; a store that stays unreachable raises ``StoreUnavailable``."""

    def __init__(self, app: LedgerApp, accounts: list[str], step: Step, size: int,
                 stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.app, self.accounts, self.step, self.size = app, accounts, step, size
        self.stop, self.progress = stop, progress
        self.complete = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with fewer_collections():
            yield from self._batches()

    def _batches(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self.accounts), self.size):
            if self.stop():
                self.complete = False
                return
            batch = self.accounts[start:start + self.size]
            results = self.app.transact(batch, self.step, [ids.account(a) for a in batch])
            for account, result in zip(batch, results):
                # a batch the store kept refusing answers ``conflict`` for each account
                yield result if result["ok"] or "account" in result else {**result, "account": account}
            if self.progress:
                self.progress(min(start + self.size, len(self.accounts)), len(self.accounts))
