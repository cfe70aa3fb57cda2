"""The one reading of what each stored event moves: double entry (SPEC D1) and its memo.

``read(aggregate_id, event)`` looks the event's class up in ``READERS`` (never its name: an
event stored under an old topic resolves to the same class, ledger.service.topics) and gives
a ``Reading``, the pair (legs, memo).  The audit takes the legs (``postings``); the read models
take legs and memo on an account's own books and on the lending pool (projections/views.py).

``legs``: (book, currency, amount), per currency summing to zero.  Books: ``user:<id>:wallet``
(all wallets of an account), ``user:<id>:liability`` (what it owes, negative),
``platform:interest_income``, ``platform:insurance_fund``, ``platform:swap_desk``,
``platform:futures_clearing``, ``platform:spot_market`` (the other side of spot trades),
``platform:fee_income`` and ``external`` (deposits, withdrawals).  The lending pool's claim
on the users is the negated sum of the user liability books, which ``pool/<currency>`` must
equal (checked by the audit).

``memo``: what the read models keep beside the books; not value, so it does not balance:
``user:<id>:upl_liability`` (the UPL-generated part of its liability, B1),
``user:<id>:incoming`` (a transfer its TransferredOut posted to the receiver's wallet book
and its TransferredIn has not yet credited to the account; zero once both are read) and
``platform:lending_pool`` (a pool's outstanding).

Every event class of every aggregate has a reader, the ones that move nothing included: an
event of a class without one is ``Unread``, so a new money movement is never skipped in silence.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Sequence

from ledger.domain import ids
from ledger.domain.account import Account
from ledger.domain.indexes import (AccountSet, ApiKeyIndex, CommandRecord, InterestClock, LendingPool, RunLog,
                                   pool_change)
from ledger.domain.platform import Platform

Posting = tuple[str, str, Decimal]
LENDING_POOL = "platform:lending_pool"
Reading = tuple[Sequence[Posting], Sequence[Posting]]  # (legs, memo); a plain tuple, built per event
NOTHING: Reading = ((), ())
Reader = Callable[[str, Any], Reading]  # (the id's name part: account or currency, event) -> Reading
READERS: dict[type, tuple[str, Reader]] = {}  # event class -> (aggregate id prefix, reader)


class Unread(LookupError):
    """An event whose class has no reader: a programming error, never skipped."""


def reads(prefix: str, *classes: type) -> Callable[[Reader], Reader]:
    """Register ``reader`` for ``classes``, events of aggregates whose ids start with ``prefix``."""
    def register(reader: Reader) -> Reader:
        for cls in classes:
            if cls in READERS:
                raise ValueError(f"{cls.__qualname__} has a reader already")
            READERS[cls] = (prefix, reader)
        return reader
    return register


def read(aggregate_id: str, e: Any) -> Reading:
    """What ``e``, stored by ``aggregate_id``, moves (``NOTHING`` when the id is not of its kind)."""
    try:
        prefix, reader = READERS[type(e)]
    except KeyError:
        raise Unread(f"no reading of {type(e).__module__}.{type(e).__qualname__}") from None
    if not aggregate_id.startswith(prefix):
        return NOTHING
    return reader(aggregate_id[len(prefix):], e)


def postings(aggregate_id: str, e: Any) -> Sequence[Posting]:
    """The double-entry legs of one stored event (D1)."""
    return read(aggregate_id, e)[0]


def unbalanced(legs: Sequence[Posting]) -> dict[str, Decimal]:
    """Per currency sums that are not zero (empty when the event balances)."""
    sums: dict[str, Decimal] = {}
    for _, currency, amount in legs:
        sums[currency] = sums.get(currency, Decimal(0)) + amount
    return {c: v for c, v in sums.items() if v != 0}


def book(account: str, kind: str) -> str:
    """``user:<account>:<kind>``: wallet, liability, upl_liability or incoming."""
    return f"user:{account}:{kind}"


def events_of(aggregate: type) -> list[type]:
    """The event classes an aggregate stores (its own nested ones, not the bases)."""
    return [v for v in vars(aggregate).values() if isinstance(v, type) and issubclass(v, aggregate.Event)
            and v not in (aggregate.Event, aggregate.Created)]


# --- accounts ---------------------------------------------------------------------------------
ACCOUNT = ids.ACCOUNT_PREFIX


@reads(ACCOUNT, Account.Deposited)
def _deposited(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), e.currency, e.amount), ("external", e.currency, -e.amount)], ())


@reads(ACCOUNT, Account.Withdrawn)
def _withdrawn(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), e.currency, -e.amount), ("external", e.currency, e.amount)], ())


@reads(ACCOUNT, Account.TransferredOut)
def _transferred_out(account: str, e: Any) -> Reading:
    """Both legs on the sending side, so each event balances; the receiver's account sees
    the money with its TransferredIn (``incoming`` until then)."""
    return ([(book(account, "wallet"), e.currency, -e.amount),
                    (book(e.to_account, "wallet"), e.currency, e.amount)],
                   [(book(e.to_account, "incoming"), e.currency, e.amount)])


@reads(ACCOUNT, Account.TransferredIn)
def _transferred_in(account: str, e: Any) -> Reading:
    return ((), [(book(account, "incoming"), e.currency, -e.amount)])


@reads(ACCOUNT, Account.OrderFilled)
def _order_filled(account: str, e: Any) -> Reading:
    wallet = book(account, "wallet")
    legs: list[Posting] = []
    counterparty = "platform:spot_market" if e.position is None else "platform:futures_clearing"
    for currency, delta in e.cash.items():
        delta = Decimal(delta)
        fee = e.fee if currency == "USDT" else Decimal(0)
        legs += [(wallet, currency, delta), (counterparty, currency, -(delta + fee))]
        if fee:
            legs.append(("platform:fee_income", currency, fee))
    if "USDT" not in e.cash and e.fee:  # a fee exactly equal to a realised gain: no cash delta
        legs += [("platform:futures_clearing", "USDT", -e.fee), ("platform:fee_income", "USDT", e.fee)]
    return (legs, ())


@reads(ACCOUNT, Account.Borrowed)
def _borrowed(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), e.currency, e.amount),
                    (book(account, "liability"), e.currency, -e.amount)],
                   [(book(account, "upl_liability"), e.currency, e.amount)] if e.upl_generated else ())


@reads(ACCOUNT, Account.Repaid)
def _repaid(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), e.currency, -e.amount),
                    (book(account, "liability"), e.currency, e.amount)],
                   [(book(account, "upl_liability"), e.currency, -e.upl_generated)])


@reads(ACCOUNT, Account.LiabilityReclassified)
def _reclassified(account: str, e: Any) -> Reading:
    return ((), [(book(account, "upl_liability"), e.currency, -e.amount)])


@reads(ACCOUNT, Account.InterestCharged)
def _interest_charged(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), e.currency, -e.paid),
                    (book(account, "liability"), e.currency, -e.capitalized),
                    ("platform:interest_income", e.currency, e.paid + e.capitalized)], ())


@reads(ACCOUNT, Account.AutoSwapped)
def _auto_swapped(account: str, e: Any) -> Reading:
    wallet = book(account, "wallet")
    return ([(wallet, e.from_currency, -e.from_amount), ("platform:swap_desk", e.from_currency, e.from_amount),
                    ("platform:swap_desk", e.to_currency, -e.to_amount), (wallet, e.to_currency, e.to_amount)], ())


@reads(ACCOUNT, Account.PositionLiquidated)
def _position_liquidated(account: str, e: Any) -> Reading:
    return ([(book(account, "wallet"), "USDT", e.realized_pnl),
                    ("platform:futures_clearing", "USDT", -e.realized_pnl)], ())


@reads(ACCOUNT, Account.BadDebtWrittenOff)
def _bad_debt(account: str, e: Any) -> Reading:
    return ([(book(account, "liability"), e.currency, e.amount),
                    ("platform:insurance_fund", e.currency, -e.amount)],
                   [(book(account, "upl_liability"), e.currency, -e.upl_generated)])


# --- the lending pools ---------------------------------------------------------------------------
@reads(ids.POOL_PREFIX, LendingPool.OutstandingChanged, LendingPool.OutstandingChangesFolded)
def _outstanding(currency: str, e: Any) -> Reading:
    return ((), [(LENDING_POOL, currency, pool_change(e))])


# --- what moves nothing: own-wallet moves, modes, orders placed or cancelled, tags, indexes --------
def _nothing(_: str, e: Any) -> Reading:
    return NOTHING


reads("", Account.AccountOpened, Account.AccountWhitelisted, Account.RiskAssessmentCompleted,
      Account.UnifiedActivated, Account.ModeSwitched, Account.ApiKeyCreated, Account.WalletTransferred,
      Account.LiquidationStarted, Account.LiquidationCompleted, Account.RiskAlertRaised, Account.RiskAlertCleared,
      Account.InterestSettled, Account.OrderPlaced, Account.OrderCancelled, LendingPool.LendingPoolOpened,
      *(cls for aggregate in (Platform, AccountSet, InterestClock, ApiKeyIndex, CommandRecord, RunLog)
        for cls in events_of(aggregate)))(_nothing)
