"""Small aggregates that keep facts across accounts exact and enforced by the store.

- ``LendingPool`` (``pool/USDT``): what all accounts owe of a currency together (B2, L2).
- ``AccountSet``: ``holders/BTC-USDT``, the accounts with a position in a symbol, so a mark
  price change settles exactly those accounts (B1, R1); ``interest/due``, the accounts with
  hours that may still be charged (I5), so an interest run need not load every account.
- ``InterestClock`` (``interest/clock``): the latest hour charged on any account (I6 for
  interest parameters).
- ``ApiKeyIndex`` (``apikey/K``): which account a key belongs to (M9); ids are unique.
- ``CommandRecord`` (``command/ID``): an accepted command_id, its content digest and first
  result (T2).  Created in the same transaction as the command's effects, so the store's
  unique (id, version) makes a command_id take effect once across processes and restarts.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import event

from ledger.domain import ids
from ledger.domain.base import LedgerAggregate
from ledger.domain.errors import StaleRead
from ledger.domain.money import ZERO


class LendingPool(LedgerAggregate):
    @staticmethod
    def create_id(currency: str, **_: Any) -> str:
        return ids.pool(currency)

    @event("LendingPoolOpened")
    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.outstanding = ZERO

    class OutstandingChanged(LedgerAggregate.Event):
        """The sum of ``changes`` account liability changes at instant ``at`` in one transaction.

        Version 2 (docs/rules.md §15).  Version 1, stored without a class version, has three
        shapes: ``{account, delta, at}`` (one account's change, before changes were summed per
        transaction), then ``{delta, changes, at}``, then ``{delta, at, changes, account: null}``."""
        delta: Decimal
        at: datetime
        changes: int
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("changes", 1)  # the first shape: one account's change
            state.pop("account", None)

    @event(OutstandingChanged)
    def change(self, delta: Decimal, at: datetime, changes: int) -> None:
        self.outstanding += delta
        self._never_negative()

    @event("OutstandingChangesFolded")
    def change_many(self, parts: list[list[Any]]) -> None:
        """Liability changes at several instants in one transaction, one event for them all:
        ``[at, delta, changes]`` per instant, in time order (a batch of commands at distinct
        instants would otherwise add one pool event per borrowing command)."""
        self.outstanding += sum((delta for _, delta, _ in parts), ZERO)
        self._never_negative()

    def _never_negative(self) -> None:
        """All accounts together can never owe less than zero: a pool that would is one read
        after a repayment the accounts of this attempt had not seen yet (``StaleRead``)."""
        if self.outstanding < 0:
            raise StaleRead(f"{self.currency}: the lending pool would go below zero ({self.outstanding})")


def pool_change(event: Any, until: datetime | None = None) -> Decimal:
    """What a lending-pool event changed of the total, counting only instants ≤ ``until``
    when one is given (zero for an event that changes nothing)."""
    if hasattr(event, "parts"):  # OutstandingChangesFolded: several instants
        return sum((delta for at, delta, _ in event.parts if until is None or at <= until), ZERO)
    if hasattr(event, "delta") and (until is None or event.at <= until):  # OutstandingChanged
        return event.delta
    return ZERO


class AccountSet(LedgerAggregate):
    """A set of account ids, kept exact by the store: ``holders/BTC-USDT`` (accounts with a
    position in the symbol) and ``interest/due`` (accounts with hours that may be charged)."""

    @staticmethod
    def create_id(name: str, **_: Any) -> str:
        return name

    @event("AccountSetOpened")
    def __init__(self, name: str) -> None:
        self.name = name
        self.accounts: dict[str, bool] = {}  # a dict: JSON-friendly for snapshots

    @event("AccountAdded")
    def add(self, account: str, at: datetime) -> None:
        self.accounts[account] = True

    @event("AccountRemoved")
    def remove(self, account: str, at: datetime) -> None:
        self.accounts.pop(account, None)


class InterestClock(LedgerAggregate):
    """``interest/clock``: the latest hour any account was charged for (I5, I6).  Written in the
    same transaction as the charges, so a change to a parameter that decides interest (rate,
    allowance, beta flag) can never be back-dated to an hour already charged."""

    @staticmethod
    def create_id(**_: Any) -> str:
        return ids.INTEREST_CLOCK

    @event("InterestClockOpened")
    def __init__(self) -> None:
        self.closed_until: datetime | None = None

    @event("InterestHoursClosed")
    def close(self, through: datetime, at: datetime) -> None:
        self.closed_until = through


class ApiKeyIndex(LedgerAggregate):
    @staticmethod
    def create_id(key_id: str, **_: Any) -> str:
        return ids.api_key(key_id)

    @event("ApiKeyRegistered")
    def __init__(self, key_id: str, account: str, at: datetime) -> None:
        self.key_id = key_id
        self.account = account


class CommandRecord(LedgerAggregate):
    @staticmethod
    def create_id(command_id: str, **_: Any) -> str:
        return ids.command(command_id)

    @event("CommandAccepted")
    def __init__(self, command_id: str, digest: str, result: list[dict[str, Any]], at: datetime) -> None:
        self.command_id = command_id
        self.digest = digest
        self.result = result


class RunLog(LedgerAggregate):
    """The latest completed run of a scheduled job (``runs/interest``, ``runs/sweep``), for
    ``ledger status``.  Every run appends one summary event."""

    @staticmethod
    def create_id(job: str, **_: Any) -> str:
        return ids.run_log(job)

    @event("RunLogOpened")
    def __init__(self, job: str) -> None:
        self.job = job
        self.last_run_at: datetime | None = None
        self.last_hour: datetime | None = None
        self.last_mark: datetime | None = None
        self.runs = 0

    @event("InterestRunCompleted")
    def interest_run_completed(
        self, at: datetime, first_hour: datetime | None, last_hour: datetime,
        accounts: int, charges: int, totals: dict[str, Decimal], complete: bool,
    ) -> None:
        """A stopped run (``complete`` false) does not move ``last_hour``: hours it did not
        reach stay overdue in `ledger status`."""
        self.last_run_at = at if self.last_run_at is None else max(self.last_run_at, at)
        if complete:
            self.last_hour = last_hour if self.last_hour is None else max(self.last_hour, last_hour)
        self.runs += 1

    @event("SweepCompleted")
    def sweep_completed(self, at: datetime, mark: datetime, accounts: int, actions: dict[str, int]) -> None:
        self.last_run_at = at if self.last_run_at is None else max(self.last_run_at, at)
        self.last_mark = mark if self.last_mark is None else max(self.last_mark, mark)
        self.runs += 1
