"""One reading of every event (issue 14): ledger.domain.postings feeds the audit and the views.

P1  Every event class of every aggregate (account.py, indexes.py, platform.py) has a reader,
    and the registry holds no other class.
P2  For every event class that moves value (a table, one or more samples each): its legs
    balance per currency, and the balance deltas the views apply are exactly its postings on
    the account's own books — cash its wallet legs (less ``incoming``: a transfer arrives
    with TransferredIn), liability its negated liability legs, upl_liability its memo — and
    exactly what the Account mutator changes.  The classes that move nothing read as nothing.
P3  An event class without a reader is caught (``Unread``) by the reading, the postings and
    the views, never skipped; a class cannot get two readers.
P4  Reading is by class: an event stored under an old topic resolves to the class it reads by.
P5  Over generated histories (interest, sweeps, liquidations, transfers): per event the views'
    deltas equal the mutator's change of the account, and every transfer's ``incoming`` memo
    comes back to zero.
"""
from __future__ import annotations

import copy
import inspect
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import event as domain_event
from eventsourcing.utils import resolve_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain import account, indexes, platform, postings
from ledger.domain.account import Account
from ledger.domain.base import LedgerAggregate
from ledger.domain.indexes import LendingPool
from ledger.domain.postings import NOTHING, READERS, Unread, book, events_of, read, unbalanced
from ledger.service import topics
from projections import audit, views
from tests.test_audit import HUNT_SETTINGS, History, generated_history

D = Decimal
T = datetime(2026, 3, 1, tzinfo=timezone.utc)
Z = D(0)


def aggregates() -> list[type]:
    return [c for module in (account, indexes, platform) for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, LedgerAggregate) and c is not LedgerAggregate and c.__module__ == module.__name__]


def test_every_event_class_has_a_reader() -> None:
    """P1."""
    classes = {cls for aggregate in aggregates() for cls in events_of(aggregate)}
    assert len(classes) > 40 and Account.Deposited in classes and LendingPool.OutstandingChanged in classes
    assert classes == set(READERS)


# --- P2: the table of the classes that move value ---------------------------------------------
def ev(cls: type, version: int = 2, aggregate: str = "account/a", **fields: Any) -> Any:
    return cls(originator_id=aggregate, originator_version=version, timestamp=T, at=T, **fields)


SAMPLES: dict[type, list[dict[str, Any]]] = {
    Account.Deposited: [dict(currency="USDT", amount=D("10.50"), wallet="unified")],
    Account.Withdrawn: [dict(currency="BTC", amount=D("0.1"), wallet="unified")],
    Account.TransferredOut: [dict(to_account="b", currency="USDT", amount=D("7"), wallet="unified")],
    Account.TransferredIn: [dict(from_account="b", currency="ETH", amount=D("2"), wallet="unified")],
    Account.OrderFilled: [  # spot with a fee; futures whose fee equals the realised gain (no cash delta)
        dict(order_id="spot", qty=D("0.5"), price=D("20000"), fee=D("1.5"),
             cash={"USDT": D("-10001.5"), "BTC": D("0.5")}, released=D("10000"), position=None, realized_pnl=Z),
        dict(order_id="fut", qty=D("1"), price=D("21000"), fee=D("3"), cash={}, released=Z,
             position=[Z, Z], realized_pnl=D("3"))],
    Account.Borrowed: [dict(currency="USDT", amount=D("40"), source="manual", upl_generated=False),
                       dict(currency="USDT", amount=D("25"), source="futures_upl", upl_generated=True)],
    Account.Repaid: [dict(currency="USDT", amount=D("105"), source="manual", principal=D("100"), interest=D("5"),
                          upl_generated=D("60"))],
    Account.LiabilityReclassified: [dict(currency="USDT", amount=D("30"))],
    Account.InterestCharged: [dict(currency="USDT", hour=T, liability=D("505"), interest_free=Z, rate=D("0.001"),
                                   interest=D("0.505"), paid=D("0.5"), capitalized=D("0.005"))],
    Account.AutoSwapped: [dict(from_currency="BTC", from_amount=D("0.01"), to_currency="USDT", to_amount=D("200"),
                               from_price=D("20000"), to_price=D("1"), reason="liability")],
    Account.PositionLiquidated: [dict(symbol="BTC-USDT", qty=D("1"), price=D("19000"), realized_pnl=D("-1000"))],
    Account.BadDebtWrittenOff: [dict(currency="USDT", amount=D("505"), principal=D("500"), interest=D("5"),
                                     upl_generated=D("100"))],
}


def prepared() -> Account:
    """An account that can take every sample: cash, a liability with interest and a UPL
    tag, open spot and futures orders and a futures position."""
    acct = Account(account="a", parent=None, vip_level=0, at=T - timedelta(days=1))
    acct.mode, acct.wallets = "unified", {"unified": {"USDT": D(20000), "BTC": D(1)}}
    acct.principal, acct.interest, acct.upl_liability = {"USDT": D(500)}, {"USDT": D(5)}, {"USDT": D(100)}
    order = dict(market="spot", symbol="BTC-USDT", side="buy", price=D(20000), wallet="unified",
                 hold_currency="USDT", hold=D(10000), filled_qty=Z)
    acct.orders = {"spot": {**order, "order_id": "spot", "qty": D(1)},
                   "fut": {**order, "order_id": "fut", "market": "futures", "qty": D(1), "hold": Z}}
    acct.positions = {"BTC-USDT": [D(1), D(20000)]}
    acct.collect_events()
    return acct


def balances(acct: Account) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    names = {c for w in acct.wallets.values() for c in w} | set(acct.principal) | set(acct.interest)
    return {c: (sum((w.get(c, Z) for w in acct.wallets.values()), Z), acct.liability(c), acct.upl_liability.get(c, Z))
            for c in names}


def moved(before: dict[str, tuple[Decimal, ...]], after: dict[str, tuple[Decimal, ...]]) -> dict[str, list[Decimal]]:
    zero = (Z, Z, Z)
    out = {c: [a - b for a, b in zip(after.get(c, zero), before.get(c, zero))] for c in set(before) | set(after)}
    return {c: v for c, v in out.items() if any(v)}


def summed(deltas: list[views.Delta]) -> dict[str, list[Decimal]]:
    out: dict[str, list[Decimal]] = {}
    for currency, column, amount in deltas:
        out.setdefault(currency, [Z, Z, Z])[column] += amount
    return {c: v for c, v in out.items() if any(v)}


def on(legs: Any, name: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for b, currency, amount in legs:
        if b == name:
            out[currency] = out.get(currency, Z) + amount
    return out


def expected_deltas(who: str, legs: Any, memo: Any) -> dict[str, list[Decimal]]:
    """The postings on ``who``'s own books as (cash, liability, upl_liability) per currency."""
    out: dict[str, list[Decimal]] = {}
    for column, sign, books in ((0, 1, legs), (0, -1, memo), (1, -1, legs), (2, 1, memo)):
        kind = {(0, 1): "wallet", (0, -1): "incoming", (1, -1): "liability", (2, 1): "upl_liability"}[(column, sign)]
        for currency, amount in on(books, book(who, kind)).items():
            out.setdefault(currency, [Z, Z, Z])[column] += sign * amount
    return {c: v for c, v in out.items() if any(v)}


@pytest.mark.parametrize("cls, fields", [(c, f) for c, samples in SAMPLES.items() for f in samples],
                         ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_each_value_movement_reads_once_for_the_audit_and_the_views(cls: type, fields: dict[str, Any]) -> None:
    """P2."""
    acct = prepared()
    e = ev(cls, version=acct.version + 1, **fields)
    legs, memo = read("account/a", e)
    assert legs or memo, f"{cls.__qualname__} moves value but reads as nothing"
    assert unbalanced(legs) == {}
    deltas = views.balance_deltas("a", (legs, memo))
    assert summed(deltas) == expected_deltas("a", legs, memo)
    assert summed(deltas) == moved(balances(acct), balances(e.mutate(copy.deepcopy(acct))))
    if cls is Account.TransferredOut:  # the receiver's wallet book moves now, its account with TransferredIn
        assert on(legs, book("b", "wallet")) == on(memo, book("b", "incoming")) == {"USDT": D(7)}
    batch = views.Batch(None)  # type: ignore[arg-type]
    views.apply_event(batch, 1, "account/a", e)  # another account's rows move with its own events
    assert {(who, c): sums for (who, c), sums in batch.balances.items() if any(sums)} == {
        ("a", c): v for c, v in summed(deltas).items()}


def test_the_table_covers_every_reader_that_moves_something() -> None:
    """P2: every class not in the table reads as nothing (pool events aside: platform totals)."""
    for cls in set(READERS) - set(SAMPLES) - {LendingPool.OutstandingChanged, LendingPool.OutstandingChangesFolded}:
        assert READERS[cls][1] is postings._nothing, cls.__qualname__


def test_pool_events_read_as_the_platform_total() -> None:
    changed = ev(LendingPool.OutstandingChanged, aggregate="pool/USDT", delta=D("-4.5"), changes=2)
    folded = LendingPool.OutstandingChangesFolded(originator_id="pool/USDT", originator_version=3, timestamp=T,
                                                  parts=[[T, D("2"), 1], [T, D("3"), 1]])
    assert read("pool/USDT", changed) == ((), [("platform:lending_pool", "USDT", D("-4.5"))])
    assert read("pool/USDT", folded) == ((), [("platform:lending_pool", "USDT", D("5"))])


def test_an_event_under_an_id_of_another_kind_reads_as_nothing() -> None:
    e = ev(Account.Deposited, aggregate="pool/USDT", currency="USDT", amount=D(1), wallet="spot")
    assert read("pool/USDT", e) == NOTHING


# --- P3, P4 ----------------------------------------------------------------------------------------
class Vault(LedgerAggregate):
    """An aggregate the registry does not know: its money movement must not pass unseen."""

    @domain_event("Stashed")
    def stash(self, currency: str, amount: Decimal, at: datetime) -> None:
        pass


def test_an_event_class_without_a_reader_is_caught() -> None:
    """P3."""
    e = Vault.Stashed(originator_id="account/a", originator_version=2, timestamp=T, currency="USDT", amount=D(1), at=T)
    for reading in (lambda: read("account/a", e), lambda: postings.postings("account/a", e),
                    lambda: views.apply_event(views.Batch(None), 1, "account/a", e)):  # type: ignore[arg-type]
        with pytest.raises(Unread, match="Vault.Stashed"):
            reading()
    with pytest.raises(ValueError, match="has a reader already"):
        postings.reads("account/", Account.Deposited)(postings._nothing)


def test_an_old_topic_resolves_to_the_class_that_is_read() -> None:
    """P4: the stored topic changes with a move, the class (and so the reading) does not."""
    topics.register()
    for old in ("ledger.account:Account.Deposited", "ledger.indexes:LendingPool.OutstandingChanged"):
        assert resolve_topic(old) in READERS
    assert resolve_topic("ledger.account:Account.TransferredIn") is Account.TransferredIn


# --- P5: generated histories -------------------------------------------------------------------------
def check_history(h: History) -> set[str]:
    states: dict[str, Any] = {}
    incoming: dict[tuple[str, str], Decimal] = {}
    seen = set()
    for n in audit.notifications(h.app):
        e = h.app.mapper.to_domain_event(n)
        legs, memo = read(n.originator_id, e)
        for b, currency, amount in memo:
            if b.endswith(":incoming"):
                incoming[(b, currency)] = incoming.get((b, currency), Z) + amount
        if not n.originator_id.startswith("account/"):
            continue
        who = n.originator_id.removeprefix("account/")
        before = balances(states[who]) if who in states else {}
        states[who] = copy.deepcopy(e.mutate(copy.deepcopy(states.get(who))))
        deltas = summed(views.balance_deltas(who, (legs, memo)))
        assert deltas == moved(before, balances(states[who])) == expected_deltas(who, legs, memo), (n.id, e)
        if deltas:
            seen.add(type(e).__name__)
    assert {k: v for k, v in incoming.items() if v} == {}
    return seen


def test_views_deltas_equal_the_mutators_over_generated_histories() -> None:
    """P5 on SQLite."""
    seen: set[str] = set()

    @settings(max_examples=6, **HUNT_SETTINGS)
    @given(data=st.data())
    def inner(data: st.DataObject) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            h = History({"PERSISTENCE_MODULE": "stores.sqlite", "SQLITE_DBNAME": str(Path(tmp) / "ledger.db")})
            try:
                generated_history(h, data)
                seen.update(check_history(h))
            finally:
                h.close()

    inner()
    assert {"Deposited", "Withdrawn", "TransferredOut", "TransferredIn", "Borrowed", "Repaid", "InterestCharged",
            "OrderFilled"} <= seen, seen
