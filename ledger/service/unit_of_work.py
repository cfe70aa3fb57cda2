"""A batch of commands against in-memory aggregates, saved in one transaction.

Handlers reach aggregates only through the unit of work, one command at a time:
``with uow.command(at) as u: ...``, then ``u.outcome``.  It remembers, per command, how many
pending events each touched aggregate had, so a rejected command is rolled back exactly (T3)
while the rest of the batch goes on.  After each accepted command it keeps the cross-account
indexes in step: position holders and accounts with interest due at once, lending pools
(what all accounts owe) folded per currency and instant at ``finish()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, Callable, TypeVar

from eventsourcing.application import AggregateNotFoundError, Repository

from ledger.domain.account import Account
from ledger.domain import ids
from ledger.domain.base import LedgerAggregate
from ledger.domain.errors import LedgerError
from ledger.domain.indexes import AccountSet, ApiKeyIndex, CommandRecord, InterestClock, LendingPool
from ledger.domain.platform import Platform, default_parameters
from ledger.read.render import result_events

A = TypeVar("A", bound=LedgerAggregate)
MAX_AGGREGATES_PER_BATCH = 50_000  # a bound on what one transaction may hold in memory


@dataclass(frozen=True)
class Outcome:
    """What came of one command: kept, with the events it triggered (``(aggregate, event)``
    pairs) and what its work gave back (``value``); or refused with ``error``, nothing of it
    kept.  ``answered`` is a repeated command's first answer (T2)."""

    events: tuple[tuple[LedgerAggregate, Any], ...] = ()
    error: LedgerError | None = None
    value: Any = None
    answered: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @cached_property
    def public_events(self) -> list[dict[str, Any]]:
        """The events the command answers with, as plain data (a repeat: the first answer's)."""
        return self.answered if self.answered is not None else result_events(self.events)

    def as_dict(self, command_id: str | None = None) -> dict[str, Any]:
        """The command's result as machine output (§12): ``ok``, then ``events`` or ``error``,
        then ``duplicate`` for a repeat, then the ``command_id`` the command carried, if any."""
        result: dict[str, Any]
        if self.error is not None:
            result = {"ok": False, "error": self.error.as_dict()}
        else:
            result = {"ok": True, "events": self.public_events}
            if self.answered is not None:
                result["duplicate"] = True
        if command_id is not None:
            result["command_id"] = command_id
        return result


class UnitOfWork:
    def __init__(self, repository: Repository[str],
                 load: Callable[[list[str]], dict[str, Any]] | None = None,
                 snapshot: Callable[[LedgerAggregate, list[Any]], Any] | None = None) -> None:
        self.repository = repository  # for rebuilding after a rejected command
        self._load = load or repository.get_many  # type: ignore[attr-defined]
        self._snapshot = snapshot  # (aggregate, its new events) -> a snapshot now, or None
        self.snapshots: list[Any] = []  # taken after accepted commands, saved with the batch
        self.loaded: dict[str, LedgerAggregate | None] = {}
        self._marks: dict[str, int] = {}  # pending-event counts at first touch this command
        self._created: set[str] = set()  # ids created by the current command
        self._before: dict[str, tuple[dict[str, Decimal], frozenset[str], bool, bool]] = {}
        # liability changes of accepted commands, folded per (currency, at) until finish()
        self._owed_changes: dict[tuple[str, datetime], list[Any]] = {}
        self._owed_pending: dict[str, Decimal] = {}  # the same changes summed per currency
        self.at: datetime | None = None  # the instant of the current (or last) command
        # what came of the last command; None while one runs, and after one that raised
        self.outcome: Outcome = None  # type: ignore[assignment]
        self._given: Any = None
        self._open = False

    # --- reaching aggregates -----------------------------------------------------------------
    def find(self, key: str) -> LedgerAggregate | None:
        if key not in self.loaded:
            self.preload([key])
        agg = self.loaded[key]
        if agg is not None and key not in self._marks:
            self._marks[key] = agg.pending_count
            if isinstance(agg, Account):
                self._before[key] = (agg.liabilities(), frozenset(agg.positions), bool(agg.interest_due), agg.alerted)
                if self._open and (agg.positions or agg.upl_liability):
                    assert self.at is not None
                    agg.mark_upl(self.platform, self.at)  # a rule instant: book the derived figure (issue 15)
        return agg

    def preload(self, keys: list[str]) -> None:
        """Load many aggregates at once, before they are used."""
        missing = [k for k in keys if k not in self.loaded]
        if len(self.loaded) + len(missing) > MAX_AGGREGATES_PER_BATCH:
            raise RuntimeError("batch too large: split the input into smaller batches")
        if missing:
            self.loaded.update(self._load(missing))

    def add(self, agg: A) -> A:
        assert self.loaded.get(agg.id) is None, f"{agg.id} exists"
        self.loaded[agg.id] = agg
        self._created.add(agg.id)
        self._marks[agg.id] = 0
        if isinstance(agg, Account):
            self._before[agg.id] = ({}, frozenset(), False, False)
        return agg

    def find_account(self, account: str) -> Account | None:
        return self.find(ids.account(account))  # type: ignore[return-value]

    def account(self, account: str) -> Account:
        found = self.find_account(account)
        if found is None:
            raise LedgerError("unknown_account", f"no account {account}")
        return found

    @property
    def platform(self) -> Platform:
        found = self.find(ids.PLATFORM)
        if found is None:
            assert self.at is not None
            found = self.add(Platform(parameters=default_parameters(), at=self.at))
        return found  # type: ignore[return-value]

    def _index(self, key: str, make: Callable[[], A]) -> A:
        found = self.find(key)
        return found if found is not None else self.add(make())  # type: ignore[return-value]

    def pool(self, currency: str) -> LendingPool:
        return self._index(ids.pool(currency), lambda: LendingPool(currency=currency))

    def platform_owed(self, currency: str) -> Decimal:
        """B2, L2: what all accounts owe of ``currency``, this batch's accepted commands included."""
        return self.pool(currency).outstanding + self._owed_pending.get(currency, Decimal(0))

    def account_set(self, name: str) -> AccountSet:
        return self._index(name, lambda: AccountSet(name=name))

    def holders(self, symbol: str) -> AccountSet:
        return self.account_set(ids.holders(symbol))

    def interest_clock(self) -> InterestClock:
        return self._index(ids.INTEREST_CLOCK, InterestClock)

    def api_key(self, key_id: str) -> ApiKeyIndex | None:
        return self.find(ids.api_key(key_id))  # type: ignore[return-value]

    def command_record(self, command_id: str) -> CommandRecord | None:
        return self.find(ids.command(command_id))  # type: ignore[return-value]

    # --- one command at a time ---------------------------------------------------------------
    def command(self, at: datetime) -> UnitOfWork:
        """Begin one command at instant ``at`` (``u.at``), for ``with uow.command(at) as u:``.

        A normal exit keeps the command: the indexes are brought in step, snapshots taken and
        its events collected.  A ``LedgerError`` rolls it back exactly (T3) and is suppressed.
        Either way ``u.outcome`` says what came of it afterwards.  Any other exception goes on
        (a fault or a store error: the unit of work is then not to be saved)."""
        assert not self._open, "one command at a time"
        self._open = True
        self.at = at
        self.outcome = None  # type: ignore[assignment]
        self._given = None
        self._forget()
        return self

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> bool:
        self._open = False
        if error is None:
            self.outcome = Outcome(tuple(self._commit()), value=self._given)
        elif isinstance(error, LedgerError):
            self._rollback()
            self.outcome = Outcome(error=error)
        else:
            return False
        self._forget()
        return True

    def _forget(self) -> None:
        """Drop what the unit of work remembers of one command (its marks, creations and the
        accounts' states before it)."""
        self._marks.clear()
        self._created.clear()
        self._before.clear()

    def give(self, value: Any) -> None:
        """What the command gives back to its caller when it is kept (``outcome.value``)."""
        self._given = value

    def _commit(self) -> list[tuple[LedgerAggregate, Any]]:
        """Bring the indexes in step and return the events this command triggered."""
        assert self.at is not None
        for key, (liabilities, symbols, was_due, was_alerted) in list(self._before.items()):
            acct = self.loaded[key]
            assert isinstance(acct, Account)
            after = acct.liabilities()
            for currency in sorted(set(liabilities) | set(after)):
                delta = after.get(currency, Decimal(0)) - liabilities.get(currency, Decimal(0))
                if delta:
                    self.pool(currency)  # loaded now, so a conflicting writer fails this batch
                    self._owed_pending[currency] = self._owed_pending.get(currency, Decimal(0)) + delta
                    change = self._owed_changes.setdefault((currency, self.at), [Decimal(0), 0])
                    change[0] += delta
                    change[1] += 1
            now = frozenset(acct.positions)
            for symbol in sorted(now - symbols):
                self.holders(symbol).add(acct.account, self.at)
            for symbol in sorted(symbols - now):
                self.holders(symbol).remove(acct.account, self.at)
            self._membership(ids.INTEREST_DUE, acct.account, was_due, bool(acct.interest_due))
            self._membership(ids.RISK_ALERTED, acct.account, was_alerted, acct.alerted)
        events = []
        for key, mark in self._marks.items():
            agg = self.loaded[key]
            if agg is not None:
                events.extend((agg, e) for e in agg._pending_events[mark:])
        self._take_snapshots(self._marks)
        return events

    def _take_snapshots(self, marks: dict[str, int]) -> None:
        """Snapshots of the aggregates this command moved, where it crossed a snapshot point:
        taken now, at the version the command left, not at the end of the batch (an account
        with 2,000 events in one batch would otherwise get one snapshot for them all)."""
        if self._snapshot is None:
            return
        for key, mark in marks.items():
            agg = self.loaded[key]
            if agg is not None and agg.pending_count > mark:
                taken = self._snapshot(agg, agg._pending_events[mark:])
                if taken is not None:
                    self.snapshots.append(taken)

    def _rollback(self) -> None:
        """T3: put every aggregate this command touched back as it was before it."""
        for key, mark in self._marks.items():
            agg = self.loaded[key]
            if key in self._created:
                self.loaded[key] = None
            elif agg is not None and agg.pending_count != mark:
                self.loaded[key] = self._rebuild(key, agg._pending_events[:mark])

    def _rebuild(self, key: str, pending: list[Any]) -> LedgerAggregate:
        try:
            agg: Any = self.repository.get(key)
        except AggregateNotFoundError:
            agg = None
        for e in pending:
            agg = e.mutate(agg)
        agg._pending_events = list(pending)
        return agg

    def _membership(self, name: str, account: str, before: bool, after: bool) -> None:
        if before != after:
            index = self.account_set(name)
            (index.add if after else index.remove)(account, self.at)

    def finish(self) -> None:
        """Write the folded liability changes: one pool event per currency and transaction,
        not one per account (an interest run over 10,000 accounts adds one event, not 10,000),
        with the change at each instant when there are several (as-of sums them to T)."""
        parts: dict[str, list[list[Any]]] = {}
        for (currency, at), (delta, changes) in sorted(self._owed_changes.items()):
            if delta:
                parts.setdefault(currency, []).append([at, delta, changes])
        marks: dict[str, int] = {}
        for currency, changes_of in parts.items():
            pool = self.pool(currency)
            marks.setdefault(pool.id, pool.pending_count)
            if len(changes_of) == 1:
                [[at, delta, changes]] = changes_of
                pool.change(delta, at, changes)
            else:
                pool.change_many(changes_of)
        self._owed_changes.clear()
        self._owed_pending.clear()
        self._take_snapshots(marks)

    def dirty(self) -> list[LedgerAggregate]:
        return [agg for agg in self.loaded.values() if agg is not None and agg.pending_count]
